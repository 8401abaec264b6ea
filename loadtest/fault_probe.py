"""Storage-fault and worker-supervision probes against the real service (2 workers, default settings).

Each probe runs under a small closed-loop load (4 clients, a new connection per request so both workers get
traffic) and prints what the clients saw:

- ``glitch``: the repository is moved away and replaced by an empty folder for N seconds, then put back.
- ``hang``: one worker is SIGSTOPped; seconds until it is killed and a replacement runs, and until ready again.
- ``kill``: one worker is SIGKILLed; responses per status until the replacement has loaded its model (+3 s).
- ``delete``: ``model.onnx`` of the served version 2 is deleted; seconds until every worker serves version 1,
  then a worker is killed and the versions served after its replacement is ready are counted.

    python -m loadtest.fault_probe --repo /tmp/ctr-repo --glitch 3 10 30
    python -m loadtest.fault_probe --repo /tmp/ctr-repo --compare-tree /tmp/before   # older code, same probes

``--repo`` needs one published ``ad-ctr`` version (1); the probes copy it, never change it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from loadtest.bench_ctr import server
from tests.fixtures.servers import worker_pids

BODY = {"candidates": [{"ad_id": "a", "features": {}}]}


class Load:
    """``clients`` threads POSTing to ``/v1/ads/ctr`` until stopped; counts statuses (and versions served)."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url, self.counts, self.versions = url, Counter[str](), Counter[int]()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _run(self) -> None:
        with httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as c:
            while not self._stop.is_set():
                try:
                    r = c.post(self.url + "/v1/ads/ctr", json=BODY)
                    if r.status_code == 200:
                        self.counts["200"] += 1
                        self.versions[r.json()["version"]] += 1
                    else:  # the machine-readable code tells a refusal (overloaded) from a fault
                        self.counts[f"{r.status_code} {r.json().get('error', {}).get('code')}"] += 1
                except httpx.HTTPError as e:
                    self.counts[type(e).__name__] += 1


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until ``predicate`` holds, or None after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return round(time.monotonic() - start, 2)
        time.sleep(0.05)
    return None


def is_ready(url: str) -> bool:
    try:
        return httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def glitch(url: str, repo: Path, seconds: float) -> dict[str, Any]:
    away = repo.with_name(repo.name + ".away")
    with Load(url) as load:
        time.sleep(1)
        repo.rename(away)
        repo.mkdir()
        time.sleep(seconds)
        repo.rmdir()
        away.rename(repo)
        time.sleep(5)  # at least two rescans after the repository is back
    return {"probe": f"empty repository for {seconds:g}s", "outcomes": dict(load.counts)}


def hang(url: str, pid: int) -> dict[str, Any]:
    victim = worker_pids(pid)[0]
    os.kill(victim, signal.SIGSTOP)
    killed = wait_for(lambda: victim not in worker_pids(pid), 60)
    replaced = wait_for(lambda: len(worker_pids(pid)) == 2, 60)
    if killed is None:
        os.kill(victim, signal.SIGCONT)
    ready = wait_for(lambda: is_ready(url), 120)
    return {"probe": "SIGSTOP one worker", "killed_s": killed, "then_replaced_s": replaced, "then_ready_s": ready}


def kill(url: str, pid: int, log: Path) -> dict[str, Any]:
    loads = log.read_text().count("is READY")
    with Load(url) as load:
        time.sleep(1)
        victim = worker_pids(pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in worker_pids(pid), 30)
        loaded = wait_for(lambda: log.read_text().count("is READY") > loads, 120)
        time.sleep(3)
    return {"probe": "SIGKILL one worker", "replacement_loaded_s": loaded, "outcomes": dict(load.counts)}


def delete(url: str, pid: int, repo: Path, log: Path) -> dict[str, Any]:
    v2 = repo / "ad-ctr" / "2"
    with Load(url, clients=2) as load:
        served_v2 = wait_for(lambda: load.versions.get(2, 0) > 0, 60)
        (v2 / "model.onnx").unlink()
        load.versions.clear()
        time.sleep(0.5)
        mark = time.monotonic()

        def only_v1() -> bool:
            load.versions.clear()
            time.sleep(1.0)
            return set(load.versions) == {1}

        moved = wait_for(only_v1, 60)
    seconds = None if moved is None else round(time.monotonic() - mark, 1)
    loads = log.read_text().count("is READY")
    victim = worker_pids(pid)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in worker_pids(pid) and log.read_text().count("is READY") > loads, 120)
    wait_for(lambda: is_ready(url), 60)
    with Load(url, clients=2) as after:
        time.sleep(3)
    return {
        "probe": "delete model.onnx of the served version 2",
        "v2_served_first": served_v2 is not None,
        "all_on_v1_within_s": seconds,
        "versions_after_worker_restart": dict(after.versions),
    }


def second_version(repo: Path) -> None:
    """``ad-ctr/2``: a copy of version 1 with its manifest renumbered (same files, same checksums)."""
    v1, v2 = repo / "ad-ctr" / "1", repo / "ad-ctr" / "2"
    shutil.copytree(v1, v2)
    doc = json.loads((v2 / "manifest.json").read_text())
    doc["version"] = 2
    (v2 / "manifest.json").write_text(json.dumps(doc))


def run(tree: Path | None, source: Path, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    repo = work / "repo"
    shutil.copytree(source, repo)
    log = work / "server.log"
    env = {"MODEL_REPO": str(repo), "APP_WORKERS": "2", "APP_HOST": "127.0.0.1", "APP_GRPC_PORT": "0"}
    with server(["-m", "app"], env, log, cwd=tree) as (url, pid):
        for seconds in args.glitch:
            results.append(glitch(url, repo, seconds))
            wait_for(lambda: is_ready(url), 60)
        for _ in range(args.rounds):
            results.append(kill(url, pid, log))
            wait_for(lambda: is_ready(url), 60)
        for _ in range(args.rounds):
            results.append(hang(url, pid))
        second_version(repo)
        results.append(delete(url, pid, repo, log))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, required=True, help="a repository with ad-ctr version 1")
    p.add_argument("--glitch", type=float, nargs="*", default=[3.0, 10.0, 30.0], help="empty-repository seconds")
    p.add_argument("--rounds", type=int, default=3, help="repetitions of the kill and hang probes")
    p.add_argument("--compare-tree", type=Path, help="another checkout to run the same probes against")
    args = p.parse_args()
    trees: dict[str, Path | None] = {"this tree": None}
    if args.compare_tree is not None:
        trees["compare tree"] = args.compare_tree
    for name, tree in trees.items():
        with tempfile.TemporaryDirectory(prefix="fault-probe-") as work:
            print(
                json.dumps({"tree": name, "load": os.getloadavg(), "results": run(tree, args.repo, args, Path(work))})
            )


if __name__ == "__main__":
    main()
