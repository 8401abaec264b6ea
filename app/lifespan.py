"""Startup and shutdown: scan, start the watcher (which loads), drain on exit.

Nothing here may fail on storage: an unreadable repository leaves the worker up, not ready and retrying (a
startup exception would make the supervisor restart it in a loop and, past its crash budget, stop the pod)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from app import tracing
from app.errors import ServiceError
from app.pod import ControlFeed, alive_beat, first_worker, heartbeat, serving_siblings
from app.registry import ModelRegistry
from app.rollout.rollback import check_canaries
from app.service import InferenceService
from app.supervisor import supervise
from app.watcher import RepositoryWatcher

if TYPE_CHECKING:
    from app.grpc.server import GrpcServer

LOG = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Loading happens in the background so liveness answers at once; readiness waits for the models. A worker
    started while a sibling serves traffic (a replacement) waits for its first load before it listens."""
    service: InferenceService = app.state.service
    registry, settings = service.registry, service.settings
    tracing.configure(settings)
    alive = supervise("worker-alive", _alive)
    LOG.info("model repository %s", registry.root)
    await registry.scan()  # never raises for storage faults: they are counted and retried by the watcher
    watcher = RepositoryWatcher(registry, settings.rescan_interval_s, settings.redis_url, settings.redis_channel)
    app.state.watcher = watcher
    watcher.start()
    beat = supervise("worker-heartbeat", lambda: _heartbeat(registry))
    judge = supervise("rollout-check", lambda: _rollout_check(registry)) if first_worker() else None
    if serving_siblings():
        LOG.info("a sibling worker is serving: listening once the first scan has loaded what it can")
        await _first_load_or_exit(app, registry)
    grpc_server = await _start_grpc(app, service)
    try:
        yield
    finally:
        if grpc_server is not None:  # drain gRPC like HTTP, before the versions it leases are unloaded
            await grpc_server.stop(grace=settings.drain_timeout_s)
        beat.stop()
        if judge is not None:
            judge.stop()
        await service.mirror.close()
        alive.stop()
        heartbeat(False)
        await watcher.stop()
        await registry.close()
        LOG.info("all versions drained and unloaded")
        if settings.tracing_enabled:
            tracing.shutdown()  # flushes the spans still queued for export


async def _first_load_or_exit(app: FastAPI, registry: ModelRegistry) -> None:
    """Wait for the registry's first sync, or until the server is told to stop (a worker waiting on an
    unreadable repository must still exit promptly on SIGTERM)."""
    server = getattr(app.state, "server", None)
    while not registry.synced.is_set():
        if server is not None and server.should_exit:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await registry.synced.wait()


async def _alive() -> None:
    """A beat per half second from the event loop itself: if the loop stalls, the beats stop."""
    while True:
        alive_beat()
        await asyncio.sleep(0.5)


async def _rollout_check(registry: ModelRegistry) -> None:
    """Canaries against their policy's limits (first worker of the pod only: one writer)."""
    while True:
        await asyncio.sleep(registry.settings.rollout_check_interval_s)
        await check_canaries(registry)


async def _heartbeat(registry: ModelRegistry) -> None:
    """Tell sibling worker processes whether this one is ready (readiness is all-or-nothing per pod), and repeat
    the repository-control actions (admin load / unload) that a sibling received."""
    feed = ControlFeed()
    while True:
        heartbeat(registry.is_ready())
        sample_gauges(registry)
        for record in feed.poll():
            try:
                if record["action"] == "load":
                    await registry.load_model(record["model"])
                elif record["action"] == "sync":  # a sibling changed the model's policy
                    await registry.sync(only=record["model"])
                elif record["action"] == "unload":
                    await registry.unload_model(record["model"])
            except ServiceError as e:
                LOG.warning("repeating %s of %s from a sibling worker failed: %s", record["action"], record["model"], e)
        await asyncio.sleep(1.0)


def sample_gauges(registry: ModelRegistry) -> None:
    """In-flight requests and READY versions, once a second: a gauge update per request would cost the hot
    path for a value Prometheus reads every 15 s or so."""
    metrics = registry.metrics
    for model in registry.models():
        metrics.ready_versions.labels(model).set(len(registry.ready_versions(model)))
    for mv in registry.loaded():
        metrics.in_flight.labels(mv.model, str(mv.version)).set(mv.leases)


async def _start_grpc(app: FastAPI, service: InferenceService) -> GrpcServer | None:
    """gRPC on ``APP_GRPC_PORT`` in this event loop; ``app.state.grpc_port`` is the bound port (None if off)."""
    app.state.grpc_port = None
    if not service.settings.grpc_enabled:
        return None
    from app.grpc.server import GrpcServer  # only gRPC deployments import grpcio

    server = GrpcServer(service)
    app.state.grpc_port = await server.start()
    return server
