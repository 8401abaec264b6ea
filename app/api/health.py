"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from app.api.deps import get_service, json_response
from app.pod import all_workers_ready
from app.supervisor import HEALTH


async def live() -> Response:
    """200 as soon as the process serves HTTP (loading models does not block it); 503 once a background loop is
    down for good, so the orchestrator restarts the process instead of leaving it wedged."""
    if not HEALTH.live:
        return json_response({"live": False, "dead": HEALTH.dead}, status_code=503)
    return json_response({"live": True})


async def ready(request: Request) -> Response:
    """200 once every required model has a warm READY version; 503 with the missing ones until then."""
    registry = get_service(request).registry
    waiting = sorted(m for m in registry.required if not registry.ready_versions(m))
    if waiting:
        return json_response({"ready": False, "waiting_for": waiting}, status_code=503)
    if not all_workers_ready():  # another worker process of this pod is still loading
        return json_response({"ready": False, "waiting_for": ["other worker processes"]}, status_code=503)
    return json_response({"ready": True})


async def metrics(request: Request) -> Response:
    """Prometheus text format, rendered in a worker thread: a scrape never stalls requests on the event loop
    (label values are bounded, see :func:`app.api.v2.metric_model`, so the text stays small too)."""
    body = await asyncio.to_thread(get_service(request).metrics.render)
    return Response(body, media_type=PROMETHEUS)


PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_LIVE: dict[str, Any] = {
    "type": "object",
    "required": ["live"],
    "properties": {"live": {"type": "boolean"}, "dead": {"type": "object", "additionalProperties": {"type": "string"}}},
}
_READY: dict[str, Any] = {
    "type": "object",
    "required": ["ready"],
    "properties": {"ready": {"type": "boolean"}, "waiting_for": {"type": "array", "items": {"type": "string"}}},
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
