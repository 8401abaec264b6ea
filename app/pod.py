"""State the worker processes of one pod share through files: readiness heartbeats, control broadcasts, the
shared folder and the worker count. Imported by the service inside each worker; the process spawner is
:mod:`app.workers`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKERS_ENV = "APP_WORKER_COUNT"
INDEX_ENV = "APP_WORKER_INDEX"
CONTROL_FILE = "control.jsonl"


def shared_folder() -> Path | None:
    """The pod's private folder shared by its worker processes (None in a single process)."""
    folder = os.environ.get(MULTIPROC_ENV)
    return Path(folder) if folder is not None and worker_count() > 1 else None


def worker_count() -> int:
    """Workers of this deployment (1 when running as a single process)."""
    return int(os.environ.get(WORKERS_ENV, "1"))


def first_worker() -> bool:
    """This process is the pod's first worker (or the only one): the one that writes pod-wide decisions."""
    return os.environ.get(INDEX_ENV, "0") == "0"


def heartbeat(ready: bool) -> None:
    """This worker's readiness for the others to see (no-op in a single process)."""
    folder, index = os.environ.get(MULTIPROC_ENV), os.environ.get(INDEX_ENV)
    if folder is None or index is None or worker_count() < 2:
        return
    path = Path(folder) / f"ready-{index}"
    if ready:
        path.touch()
    else:
        path.unlink(missing_ok=True)


def alive_beat() -> None:
    """This worker's event loop is turning (no-op in a single process): the supervisor's hang detector."""
    folder, index = os.environ.get(MULTIPROC_ENV), os.environ.get(INDEX_ENV)
    if folder is not None and index is not None and worker_count() > 1:
        (Path(folder) / f"alive-{index}").touch()


def hung_workers(max_age_s: float) -> list[int]:
    """Sibling workers whose loop has not beaten for ``max_age_s`` (empty in a single process). A worker that
    never beat is starting, not hung; the supervisor removes a killed worker's file."""
    folder = os.environ.get(MULTIPROC_ENV)
    if folder is None or worker_count() < 2:
        return []
    now = time.time()
    return [i for i in range(worker_count()) if now - (beat_time(Path(folder) / f"alive-{i}") or now) > max_age_s]


def pod_live(hang_timeout_s: float) -> dict[str, object]:
    """Liveness detail for the probes: ``{}`` when live, else which loops are down or which workers are hung
    (a hung worker is also replaced by the supervisor; the probe fails meanwhile so nobody reads it as live)."""
    from app.supervisor import HEALTH

    detail: dict[str, object] = {}
    if not HEALTH.live:
        detail["dead"] = HEALTH.dead
    hung = hung_workers(hang_timeout_s)
    if hung:
        detail["hung_workers"] = hung
    return detail


def serving_siblings(max_age_s: float = 5.0) -> bool:
    """Another worker of this pod reports ready: traffic is flowing, so a new worker must not take connections
    before its models are loaded (at pod start none is ready and readiness keeps traffic away instead)."""
    folder, index = os.environ.get(MULTIPROC_ENV), os.environ.get(INDEX_ENV)
    if folder is None or index is None or worker_count() < 2:
        return False
    now = time.time()
    for i in range(worker_count()):
        beat = beat_time(Path(folder) / f"ready-{i}")
        if str(i) != index and beat is not None and now - beat <= max_age_s:
            return True
    return False


def beat_time(path: Path) -> float | None:
    """When a beat file was last touched (None: never)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def all_workers_ready(max_age_s: float = 5.0) -> bool:
    """Every worker reported ready within ``max_age_s`` (always True in a single process)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if folder is None or worker_count() < 2:
        return True
    now = time.time()
    for index in range(worker_count()):
        path = Path(folder) / f"ready-{index}"
        try:
            if now - path.stat().st_mtime > max_age_s:
                return False
        except FileNotFoundError:
            return False
    return True


def broadcast(action: str, model: str) -> None:
    """Tell sibling workers to repeat a repository-control action this worker just did: ``load`` / ``unload``, or
    ``sync`` (a rescan of the model, after its rollout policy changed).

    One JSON line appended (``O_APPEND``: small writes never interleave) to a file in the pod's private folder;
    each worker's heartbeat loop applies the lines of the others within about a second.
    """
    folder = os.environ.get(MULTIPROC_ENV)
    if folder is None or worker_count() < 2:
        return
    line = json.dumps({"action": action, "model": model, "from": os.getpid()}) + "\n"
    with open(Path(folder) / CONTROL_FILE, "a", encoding="utf-8") as f:
        f.write(line)


class ControlFeed:
    """This worker's read position in the control file: only lines written after it started, by others."""

    def __init__(self) -> None:
        folder = os.environ.get(MULTIPROC_ENV)
        self.path = Path(folder) / CONTROL_FILE if folder is not None and worker_count() > 1 else None
        self.offset = self.path.stat().st_size if self.path is not None and self.path.exists() else 0

    def poll(self) -> list[dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        records = [json.loads(line) for line in complete.splitlines() if line.strip()]
        return [r for r in records if r.get("from") != os.getpid()]
