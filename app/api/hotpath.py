"""The lean per-request path: inference POSTs skip the framework's middleware stack and router.

Every request through FastAPI/Starlette passes about ten ASGI layers (error and exception middlewares, body-limit
and telemetry wrappers, the request-context middleware, an exit-stack middleware, a router walk over every route)
before its endpoint runs; for a 1-row inference that was about half of the Python time per request.
:class:`ServingApp` answers ``POST`` on the task routes and the two v2 infer routes itself, calling **the same
endpoint functions** the router would (so behaviour, errors, metrics and limits are identical), and hands every
other request to FastAPI. Request ids, the declared-size check and the catch-all 500 are done here once, the way
:class:`app.api.errors.RequestContextMiddleware` does them for the other routes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from app import tracing
from app.api.errors import REQUEST_ID, _declared_too_big, _request_id, _send_error, error_response
from app.errors import ServiceError
from app.logs import REQUEST_ID as REQUEST_ID_VAR

LOG = logging.getLogger("app.errors")
Endpoint = Callable[[Request], Awaitable[Response]]
_V2 = "/v2/models/"


class ServingApp(FastAPI):
    """FastAPI with a direct path for inference requests (see the module docstring)."""

    hot_exact: dict[str, Endpoint]
    hot_v2: tuple[Endpoint, Endpoint] | None = None
    max_body_bytes: int = 1 << 20

    def set_hot_routes(self, exact: dict[str, Endpoint], v2: tuple[Endpoint, Endpoint], max_body_bytes: int) -> None:
        """``exact``: path -> endpoint; ``v2``: the (latest, versioned) infer endpoints."""
        self.hot_exact, self.hot_v2, self.max_body_bytes = exact, v2, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._match(scope)
            if endpoint is not None:
                await self._serve(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _match(self, scope: Scope) -> Endpoint | None:
        path: str = scope["path"]
        endpoint = getattr(self, "hot_exact", {}).get(path)
        if endpoint is not None or self.hot_v2 is None or not path.startswith(_V2) or not path.endswith("/infer"):
            return endpoint
        parts = path[len(_V2) : -len("/infer")].split("/")
        if len(parts) == 1 and parts[0]:
            scope["path_params"] = {"model": parts[0]}
            return self.hot_v2[0]
        if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
            scope["path_params"] = {"model": parts[0], "version": parts[2]}
            return self.hot_v2[1]
        return None

    def _span_name(self, scope: Scope) -> str:
        """The route, not the path: a span name per model name would be unbounded."""
        path: str = scope["path"]
        return f"POST {path}" if path in getattr(self, "hot_exact", {}) else "POST /v2/models/{model}/infer"

    async def _serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        rid = _request_id(scope)
        REQUEST_ID_VAR.set(rid)  # this request's task only: uvicorn runs each request in its own task
        scope["app"] = self
        scope.setdefault("state", {})["request_id"] = rid
        rid_header = (REQUEST_ID.encode(), rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        too_big = _declared_too_big(scope, self.max_body_bytes)
        if too_big is not None:
            await _send_error(scope, send_with_id, too_big)
            return
        trace = tracing.start_http(scope["headers"], lambda: self._span_name(scope), rid) if tracing.ENABLED else None
        try:
            response = await endpoint(Request(scope, receive))
        except ServiceError as e:
            response = error_response(scope["path"], e)
        except Exception as e:
            LOG.exception("unhandled error; request_id=%s POST %s", rid, scope.get("path"))
            if trace is not None:
                tracing.end_request(trace, 500, repr(e))
            await _send_error(scope, send_with_id, ServiceError(f"internal error (request id {rid})"))
            return
        if trace is not None:
            tracing.end_request(trace, response.status_code)
        await send_with_id(
            {"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers}
        )
        await send({"type": "http.response.body", "body": response.body})
