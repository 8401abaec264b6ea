"""One worker process per core: each binds the same port with ``SO_REUSEPORT`` and the kernel spreads connections.

Every worker is a whole service (its own registry, watcher, batchers and models): there is no shared state to
lock, hot reload and draining work per worker exactly as in one process, and a crashed worker is restarted by
the supervisor (this process) without touching the others. Metrics are merged across workers by
``prometheus_client``'s multiprocess mode (one mmap file per worker under a private temp folder, merged at scrape
time by whichever worker answers ``/metrics``); readiness is 200 only when **every** worker is ready (each worker
keeps a heartbeat file there), so a pod never takes traffic with a cold worker.

Each worker's event loop also touches an ``alive-N`` file every half second. A worker whose file goes stale for
``APP_WORKER_HANG_TIMEOUT_S`` (SIGSTOP, a deadlock, a native call that never returns) is hung: its siblings
answer liveness 503 and the supervisor SIGKILLs and replaces it. A new worker listens only after its first scan
has loaded what it can when a sibling is already serving, so a replacement never answers "model not found".

SIGTERM/SIGINT to the supervisor are forwarded to every worker, which drains (in-flight requests finish, new
connections are refused once its listener closes) within ``APP_DRAIN_TIMEOUT_S``; stragglers are killed after
that plus a margin.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from app.main import create_app, http_protocol, setup_logging
from app.pod import INDEX_ENV, MULTIPROC_ENV, WORKERS_ENV, beat_time
from app.settings import Settings, cli_overrides, settings_or_exit

LOG = logging.getLogger("app.workers")


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def serve(settings: Settings, workers: int, overrides: dict[str, Any]) -> None:
    """Run ``workers`` worker processes until SIGTERM/SIGINT; returns when all have exited.

    Workers inherit the environment (so secrets never pass through here) and get the CLI ``overrides`` plus the
    ports resolved once for all of them."""
    reserve = reuseport_socket(settings.host, settings.port)  # bound, never listening: fixes port 0 for all
    port = reserve.getsockname()[1]
    metrics_dir = Path(tempfile.mkdtemp(prefix="shopinfer-metrics-"))
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    os.environ[WORKERS_ENV] = str(workers)
    restarts_total = _restart_counter()
    overrides = {**overrides, "port": port}
    grpc_reserve = None
    if getattr(settings, "grpc_enabled", False):  # gRPC binds with SO_REUSEPORT too: one port for all workers
        grpc_reserve = reuseport_socket(settings.host, settings.grpc_port)
        overrides.update(grpc_port=grpc_reserve.getsockname()[1])
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs.values():
            if p.pid and p.is_alive():
                os.kill(p.pid, signum)

    def start(index: int) -> BaseProcess:
        p = ctx.Process(target=_worker, args=(overrides, index), name=f"worker-{index}")
        p.start()
        return p

    procs: dict[int, BaseProcess] = {}
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info(
        "serving on %s:%d with %d workers (SO_REUSEPORT); metrics merged in %s",
        settings.host,
        port,
        workers,
        metrics_dir,
    )
    started: dict[int, float] = {}
    try:
        procs.update({i: start(i) for i in range(workers)})
        started.update({i: time.time() for i in range(workers)})
        restarts: list[float] = []
        while not stopping:
            wait([p.sentinel for p in procs.values()], timeout=0.5)
            for index, p in list(procs.items()):
                if not stopping and p.is_alive():
                    _kill_if_hung(metrics_dir, index, p, started[index], settings)
                if stopping or p.is_alive():
                    continue
                _forget_worker(metrics_dir, p.pid, index)
                now = time.monotonic()
                restarts = [t for t in restarts if t > now - 60] + [now]
                restarts_total.inc()
                LOG.error(
                    "worker %d (pid %s) exited with %s; restarting (%d restarts in 60s)",
                    index,
                    p.pid,
                    p.exitcode,
                    len(restarts),
                )
                if len(restarts) > 5 * workers:
                    LOG.critical("workers keep crashing; shutting down")
                    stop(signal.SIGTERM, None)
                    break
                procs[index] = start(index)
                started[index] = time.time()
        deadline = time.monotonic() + settings.drain_timeout_s + 10
        for p in procs.values():
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                LOG.warning("worker %s did not stop in time; killing it", p.name)
                p.kill()
                p.join(5)
    finally:
        reserve.close()
        if grpc_reserve is not None:
            grpc_reserve.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _restart_counter() -> Any:
    """``worker_restarts_total``, written by this supervising process into the folder the workers' metrics are
    merged from (so ``/metrics`` of any worker shows it). prometheus_client chose its value class when it was
    imported, before the folder existed: this process switches to the multiprocess one now."""
    from prometheus_client import CollectorRegistry, Counter, values

    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return Counter("worker_restarts", "Worker processes that exited and were restarted.", registry=CollectorRegistry())


def _kill_if_hung(metrics_dir: Path, index: int, p: BaseProcess, started: float, settings: Settings) -> None:
    """SIGKILL a worker whose event loop stopped beating (SIGTERM would wait on the very loop that is stuck);
    the supervisor loop then replaces it like any exited worker."""
    last = beat_time(metrics_dir / f"alive-{index}")
    if last is None or last < started:  # not beaten yet: still importing and starting
        stuck_for, limit = time.time() - started, settings.worker_start_timeout_s
    else:
        stuck_for, limit = time.time() - last, settings.worker_hang_timeout_s
    if stuck_for <= limit or p.pid is None:
        return
    LOG.error(
        "worker %d (pid %s) has not beaten for %.1fs (limit %.0fs): hung; killing it", index, p.pid, stuck_for, limit
    )
    os.kill(p.pid, signal.SIGKILL)
    p.join(5)


def _forget_worker(metrics_dir: Path, pid: int | None, index: int) -> None:
    """A dead worker's live gauges and readiness must not linger in the merged view."""
    if pid is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(metrics_dir))  # type: ignore[no-untyped-call]
    (metrics_dir / f"ready-{index}").unlink(missing_ok=True)
    (metrics_dir / f"alive-{index}").unlink(missing_ok=True)


def _worker(overrides: dict[str, Any], index: int) -> None:
    """Child process: a complete service on its own ``SO_REUSEPORT`` listener."""
    import uvicorn

    os.environ[INDEX_ENV] = str(index)
    settings = Settings(**overrides)
    setup_logging(settings, index)
    sock = reuseport_socket(settings.host, settings.port)  # uvicorn listens after the lifespan's startup
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=http_protocol(settings),
        log_level=settings.log_level,
        access_log=settings.access_log,
        log_config=None,  # see run()
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    app.state.server = server  # the lifespan's wait for the first load ends early on SIGTERM
    server.run(sockets=[sock])


def run(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM: one uvicorn (uvloop + httptools) process per worker, one worker per core."""
    overrides = cli_overrides(argv)
    settings = settings_or_exit(overrides)
    setup_logging(settings)
    workers = settings.workers or default_workers()
    if workers > 1:
        serve(settings, workers, overrides)
        return
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=http_protocol(settings),
        log_level=settings.log_level,
        access_log=settings.access_log,
        log_config=None,  # uvicorn's loggers propagate to the handler of app.logs (redaction, rate limit, JSON)
        proxy_headers=False,  # nothing here reads the client address; one ASGI layer less per request
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
    )


def default_workers() -> int:
    """One per core this process may run on (the cgroup/affinity view, not the host's core count)."""
    return max(1, len(os.sched_getaffinity(0)))
