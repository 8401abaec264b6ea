"""Startup and shutdown: decide the required models, start the watcher (which loads), drain on exit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from app.errors import ServiceError
from app.pod import ControlFeed, heartbeat
from app.registry import ModelRegistry
from app.repository import list_models
from app.service import InferenceService
from app.supervisor import supervise
from app.watcher import RepositoryWatcher

if TYPE_CHECKING:
    from app.grpc.server import GrpcServer

LOG = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Loading happens in the background so liveness answers at once; readiness waits for the models."""
    service: InferenceService = app.state.service
    registry, settings = service.registry, service.settings
    if not registry.required:
        registry.required = set(await asyncio.to_thread(list_models, registry.root))
    LOG.info("model repository %s; readiness waits for %s", registry.root, sorted(registry.required) or "nothing")
    watcher = RepositoryWatcher(registry, settings.rescan_interval_s, settings.redis_url, settings.redis_channel)
    app.state.watcher = watcher
    watcher.start()
    beat = supervise("worker-heartbeat", lambda: _heartbeat(registry))
    grpc_server = await _start_grpc(app, service)
    try:
        yield
    finally:
        if grpc_server is not None:  # drain gRPC like HTTP, before the versions it leases are unloaded
            await grpc_server.stop(grace=settings.drain_timeout_s)
        beat.stop()
        heartbeat(False)
        await watcher.stop()
        await registry.close()
        LOG.info("all versions drained and unloaded")


async def _heartbeat(registry: ModelRegistry) -> None:
    """Tell sibling worker processes whether this one is ready (readiness is all-or-nothing per pod), and repeat
    the repository-control actions (admin load / unload) that a sibling received."""
    feed = ControlFeed()
    while True:
        heartbeat(registry.is_ready())
        for record in feed.poll():
            try:
                if record["action"] == "load":
                    await registry.load_model(record["model"])
                elif record["action"] == "unload":
                    await registry.unload_model(record["model"])
            except ServiceError as e:
                LOG.warning("repeating %s of %s from a sibling worker failed: %s", record["action"], record["model"], e)
        await asyncio.sleep(1.0)


async def _start_grpc(app: FastAPI, service: InferenceService) -> GrpcServer | None:
    """gRPC on ``APP_GRPC_PORT`` in this event loop; ``app.state.grpc_port`` is the bound port (None if off)."""
    app.state.grpc_port = None
    if not service.settings.grpc_enabled:
        return None
    from app.grpc.server import GrpcServer  # only gRPC deployments import grpcio

    server = GrpcServer(service)
    app.state.grpc_port = await server.start()
    return server
