"""Start a server process on a free port, wait until it answers, stop it: polled with a deadline, never a sleep."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes (then raise TimeoutError naming ``what``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """Whether ``GET url`` answers 200 (connection errors and other statuses are "not yet")."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def log_tail(log: Path | None, n: int = 3000) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return log.read_text(errors="replace")[-n:]


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 15.0, *, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; ``group`` signals the process group (servers that fork helpers)."""
    if proc.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(10)


def spawn(
    argv: Sequence[str],
    *,
    ready: Callable[[], bool],
    what: str,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    timeout_s: float = 120.0,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` (output appended to ``log``) and return once ``ready()`` holds.

    Raises (after stopping the process) when it exits first or is not ready within ``timeout_s``; the message
    carries the end of its log, so a failed start says why.
    """
    kw: dict[str, Any] = {"cwd": cwd, "env": dict(env) if env is not None else None, "start_new_session": new_session}
    if log is None:
        proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    else:
        with open(log, "ab") as out:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=out, **kw)
    try:
        wait_until(lambda: proc.poll() is not None or ready(), timeout_s, what, interval_s=0.1)
    except TimeoutError as e:
        stop(proc, group=new_session)
        raise TimeoutError(f"{e}\n--- log tail ({log}) ---\n{log_tail(log)}") from None
    except BaseException:
        stop(proc, group=new_session)
        raise
    if proc.poll() is not None:
        raise RuntimeError(
            f"{what}: the process exited with {proc.returncode}\n--- log tail ({log}) ---\n{log_tail(log)}"
        )
    return proc


@contextmanager
def running(
    argv: Sequence[str], *, ready: Callable[[], bool], what: str, **kw: object
) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`spawn` for the duration of a ``with`` block; always stopped at the end."""
    proc = spawn(argv, ready=ready, what=what, **kw)  # type: ignore[arg-type]
    try:
        yield proc
    finally:
        stop(proc, group=bool(kw.get("new_session")))


def service_env(port: int, **env: str) -> dict[str, str]:
    """Environment of ``python -m app`` on loopback ``port`` (gRPC on a free port); ``REDIS_URL`` only if given."""
    full = {**os.environ, "APP_HOST": "127.0.0.1", "APP_PORT": str(port), "APP_GRPC_PORT": "0", **env}
    if "REDIS_URL" not in env:
        full.pop("REDIS_URL", None)
    return full


@contextmanager
def python_server(
    args: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path | None = None
) -> Iterator[tuple[str, int]]:
    """``python <args>`` on a free port until ``/v2/health/ready`` answers; yields its base URL and pid.

    ``{port}`` in ``args`` and ``APP_PORT`` carry the port; ``cwd`` runs another checkout's code (its tree first on
    ``PYTHONPATH``). Always stopped at the end.
    """
    port = free_port()
    argv = [sys.executable, *[a.replace("{port}", str(port)) for a in args]]
    extra = {"PYTHONPATH": str(cwd)} if cwd is not None else {}
    url = f"http://127.0.0.1:{port}"
    full = {**os.environ, **env, **extra, "APP_PORT": str(port)}
    ready = f"{url}/v2/health/ready"
    with running(argv, ready=lambda: http_ok(ready), what=f"{ready}", log=log, env=full, cwd=cwd or ROOT) as proc:
        yield url, proc.pid
