"""App factory and server entry point. Building an app does no I/O; serving starts in the lifespan.

Typical usage::

    app = create_app(Settings(model_repo="/models"))   # ASGI app, e.g. for tests with LifespanManager
    run(["--port", "8000"])                              # python -m app / svc-serve
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from app.api.errors import RequestContextMiddleware, install_error_handlers
from app.api.routes import install_routes
from app.lifespan import lifespan
from app.metrics import Metrics
from app.registry import ModelRegistry
from app.runtime.base import Runtime
from app.service import InferenceService
from app.settings import Settings, settings_from_args


def create_app(
    settings: Settings | None = None,
    *,
    runtime_factory: Callable[[], Runtime] | None = None,
    metrics_registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Wire settings, metrics, registry and service into a FastAPI app (collaborators are injectable)."""
    settings = settings or Settings()
    metrics = Metrics(metrics_registry)
    registry = ModelRegistry(settings, metrics, runtime_factory)
    app = FastAPI(
        title="shopinfer",
        summary="Hot-reloading inference service: KServe v2 + task endpoints",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = InferenceService(settings, registry, metrics)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    install_routes(app)
    return app


def run(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM: one uvicorn (uvloop + httptools) process per worker, one worker per core."""
    settings = settings_from_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    workers = settings.workers or default_workers()
    if workers > 1:
        from app.workers import serve

        serve(settings, workers)
        return
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
    )


def default_workers() -> int:
    """One per core this process may run on (the cgroup/affinity view, not the host's core count)."""
    return max(1, len(os.sched_getaffinity(0)))
