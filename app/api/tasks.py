"""The route factory: every task's ``/v1/...`` routes are mounted here with the same timing, headers, body
limits, errors and metrics. No task is named in this module; tasks come from :mod:`app.tasks.registry`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from app import tracing
from app.api.deps import (
    MODEL_VERSION_HEADER,
    add_hot_route,
    get_service,
    json_response,
    read_body,
    request_options,
    require_json,
)
from app.errors import CATALOGUE, codes_with_status
from app.tasks.base import Route
from app.tasks.registry import all_routes

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_COMMON_CODES = (
    "model_not_found",
    "unsupported_media_type",
    "model_not_ready",
    "overloaded",
    "wrong_task",
    "deadline_exceeded",
)
_COMMON_ERRORS = {s: ", ".join(codes_with_status(s, _COMMON_CODES)) for s in (404, 415, 503, 504)}


def task_handler(route: Route[Any]) -> Callable[[Request], Awaitable[Response]]:
    """One ASGI endpoint for ``route``: observe, read the bounded body, parse, run on the data plane."""

    async def handle(request: Request) -> Response:
        svc = get_service(request)
        with svc.observe(route.endpoint, svc.model_for(route)) as obs:
            opts = request_options(request, svc.settings.default_timeout_ms)
            require_json(request)
            # overloaded: refuse before reading and parsing the body
            with svc.admit(obs.model) if route.needs_model else nullcontext():
                req = route.parse(await read_body(request, svc.settings.max_body_bytes))
                if tracing.ENABLED:
                    tracing.mark("parse")
                result = await svc.run_task(route, req, opts, obs)
        response = json_response(result)
        if route.needs_model:
            response.raw_headers.append((MODEL_VERSION_HEADER, obs.version.encode()))
        return response

    handle.__name__ = f"task_{route.endpoint}"
    return handle


def openapi_extra(route: Route[Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Request body schema (``oneOf`` the route's bodies when it takes several) with examples, and every documented
    error with its codes; nested models go to ``defs`` (merged into ``components/schemas`` so every ``$ref``
    resolves)."""
    schemas = []
    for model in (route.request, *route.alternatives):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        defs.update(schema.pop("$defs", {}))
        schemas.append(schema)
    content: dict[str, Any] = {"schema": schemas[0] if len(schemas) == 1 else {"oneOf": schemas}}
    if route.examples:
        content["examples"] = {name: {"value": value} for name, value in route.examples.items()}
    errors = {**route.errors, **_COMMON_ERRORS}
    responses = {
        str(status): {"description": describe(codes), "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        for status, codes in sorted(errors.items())
    }
    if route.response_example is not None:
        responses["200"] = {
            "description": "Successful Response",
            "content": {"application/json": {"example": route.response_example}},
        }
    return {"requestBody": {"required": True, "content": {"application/json": content}}, "responses": responses}


def describe(codes: str) -> str:
    """A response's description: each code of the comma-separated list with its meaning from the catalogue."""
    names = [c.strip() for c in codes.split(",") if c.strip()]
    return "; ".join(f"`{c}`: {CATALOGUE[c].meaning}" if c in CATALOGUE else f"`{c}`" for c in names)


def register(app: FastAPI) -> None:
    defs: dict[str, Any] = {}
    for route in all_routes():
        add_hot_route(
            app,
            route.path,
            task_handler(route),
            response_model=route.response,
            summary=route.summary,
            description=route.description,
            openapi_extra=openapi_extra(route, defs),
            name=f"task_{route.endpoint}",
            tags=[route.owner.name],
        )
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = generate()
            doc.setdefault("components", {}).setdefault("schemas", {}).update(defs)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
