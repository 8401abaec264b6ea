"""App factory. Building an app does no I/O; serving starts in the lifespan (the entry point is :func:`app.workers.run`).

Typical usage::

    app = create_app(Settings(model_repo="/models"))   # ASGI app, e.g. for tests with LifespanManager
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from app.api import docs, v2
from app.api.errors import RequestContextMiddleware, install_error_handlers
from app.api.hotpath import ServingApp
from app.api.routes import install_routes
from app.api.tasks import task_handler
from app.lifespan import lifespan
from app.logs import configure_logging
from app.manifest import Manifest
from app.metrics import Metrics
from app.registry import ModelRegistry
from app.runtime.base import Runtime
from app.service import InferenceService
from app.settings import Settings
from app.tasks.registry import all_routes


def create_app(
    settings: Settings | None = None,
    *,
    runtime_factory: Callable[[Manifest], Runtime] | None = None,
    metrics_registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Wire settings, metrics, registry and service into a FastAPI app (collaborators are injectable)."""
    settings = settings or Settings()
    metrics = Metrics(metrics_registry)
    registry = ModelRegistry(settings, metrics, runtime_factory)
    app = ServingApp(
        title="shopinfer",
        summary="Hot-reloading inference service: KServe v2 + task endpoints",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # served with local assets by app.api.docs (the defaults need a CDN)
        redoc_url=None,
    )
    app.state.service = InferenceService(settings, registry, metrics)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    install_routes(app)
    docs.register(app)
    if settings.hot_path:
        hot = {route.path: task_handler(route) for route in all_routes()}
        app.set_hot_routes(hot, (v2.infer, v2.infer_version), settings.max_body_bytes)
    return app


def http_protocol(settings: Settings) -> Any:
    """uvicorn's httptools protocol with the request head bounded (fields, bytes, time), writing each response
    with one send unless ``APP_COALESCE_WRITES=false``."""
    from app.server.protocol import HeadLimits, guarded_protocol

    limits = HeadLimits(settings.max_header_fields, settings.max_header_bytes, settings.header_timeout_s)
    return guarded_protocol(limits, coalesce=settings.coalesce_writes)


def setup_logging(settings: Settings, worker: int | None = None) -> None:
    """The process's log handler from the settings (see :mod:`app.logs`)."""
    configure_logging(
        settings.log_level,
        settings.log_format,
        rate_interval_s=settings.log_rate_interval_s,
        rate_burst=settings.log_rate_burst,
        access_sample=settings.access_log_sample,
        worker=worker,
    )
