"""Startup and shutdown: decide the required models, start the watcher (which loads), drain on exit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.repository import list_models
from app.service import InferenceService
from app.watcher import RepositoryWatcher

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
    try:
        yield
    finally:
        await watcher.stop()
        await registry.close()
        LOG.info("all versions drained and unloaded")
