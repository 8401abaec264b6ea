"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from app.api.deps import get_service, json_response
from app.pod import all_workers_ready, pod_live
from app.registry import ModelRegistry


async def live(request: Request) -> Response:
    """200 as soon as the process serves HTTP (loading models does not block it); 503 once a background loop is
    down for good or a sibling worker is hung, so nobody mistakes a wedged pod for a live one."""
    detail = pod_live(get_service(request).settings.worker_hang_timeout_s)
    if detail:
        return json_response({"live": False, **detail}, status_code=503)
    return json_response({"live": True})


async def ready(request: Request) -> Response:
    """200 once every required model has a warm READY version; 503 with the missing ones until then."""
    registry = get_service(request).registry
    detail = storage_detail(registry)
    waiting = sorted(m for m in registry.required if not registry.ready_versions(m))
    if not registry.scanned:
        waiting = ["the model repository (not readable yet)"]
    if waiting:
        return json_response({"ready": False, "waiting_for": waiting, **detail}, status_code=503)
    if not all_workers_ready():  # another worker process of this pod is still loading
        return json_response({"ready": False, "waiting_for": ["other worker processes"], **detail}, status_code=503)
    return json_response({"ready": True, **detail})


def storage_detail(registry: ModelRegistry) -> dict[str, Any]:
    """Storage trouble the pod rides out (it keeps serving what it loaded), said where operators look."""
    detail: dict[str, Any] = {}
    if registry.repository_problem:
        detail["repository"] = registry.repository_problem
    if registry.integrity:
        detail["integrity"] = registry.integrity_problems()
    return detail


async def metrics(request: Request) -> Response:
    """Prometheus text format, rendered in a worker thread: a scrape never stalls requests on the event loop
    (label values are bounded, see :func:`app.api.v2.metric_model`, so the text stays small too)."""
    body = await asyncio.to_thread(get_service(request).metrics.render)
    return Response(body, media_type=PROMETHEUS)


PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_LIVE: dict[str, Any] = {
    "type": "object",
    "required": ["live"],
    "properties": {
        "live": {"type": "boolean"},
        "dead": {"type": "object", "additionalProperties": {"type": "string"}},
        "hung_workers": {"type": "array", "items": {"type": "integer"}},
    },
}
_READY: dict[str, Any] = {
    "type": "object",
    "required": ["ready"],
    "properties": {
        "ready": {"type": "boolean"},
        "waiting_for": {"type": "array", "items": {"type": "string"}},
        "repository": {"type": "string", "description": "why the latest repository scan was not trusted"},
        "integrity": {"type": "array", "items": {"type": "string"}, "description": "served versions changed on disk"},
    },
}


def _doc(schema: dict[str, Any], bad: str) -> dict[int | str, dict[str, Any]]:
    body = {"application/json": {"schema": schema}}
    return {200: {"description": "OK", "content": body}, 503: {"description": bad, "content": body}}


def register(app: FastAPI) -> None:
    tags: list[str | Enum] = ["health"]
    app.add_api_route(
        "/v2/health/live",
        live,
        methods=["GET"],
        tags=tags,
        summary="Liveness",
        responses=_doc(_LIVE, "a background loop is down for good: restart the process"),
    )
    app.add_api_route(
        "/v2/health/ready",
        ready,
        methods=["GET"],
        tags=tags,
        summary="Readiness",
        responses=_doc(_READY, "required models are not warm yet"),
    )
    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        tags=tags,
        summary="Prometheus metrics",
        description="Request counts by endpoint/model/version/outcome/code (unknown model names are counted as "
        "`_unknown_`), latency, queue-wait and compute histograms, batch sizes, queue depth, admission refusals, "
        "load events and failures, background-task crashes.",
        responses={
            200: {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {PROMETHEUS: {"schema": {"type": "string"}}},
            }
        },
        response_class=Response,
    )
