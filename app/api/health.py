"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from app.api.deps import get_service, json_response

async def live() -> Response:
    """200 as soon as the process serves HTTP (loading models does not block it)."""
    return json_response({"live": True})


async def ready(request: Request) -> Response:
    """200 once every required model has a warm READY version; 503 with the missing ones until then."""
    registry = get_service(request).registry
    waiting = sorted(m for m in registry.required if not registry.ready_versions(m))
    if waiting:
        return json_response({"ready": False, "waiting_for": waiting}, status_code=503)
    return json_response({"ready": True})


async def metrics(request: Request) -> Response:
    body = get_service(request).metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def register(app: FastAPI) -> None:
    app.add_api_route("/v2/health/live", live, methods=["GET"])
    app.add_api_route("/v2/health/ready", ready, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
