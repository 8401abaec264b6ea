"""Error rendering for HTTP: coded JSON bodies, the request-id middleware and the catch-all 500.

v2 routes answer ``{"error": "message", "code": "..."}`` (tritonclient reads ``error``); task routes answer
``{"error": {"code": "...", "message": "..."}}``. Anything that is not a :class:`ServiceError` is logged with
the request id and becomes a generic 500 that leaks nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PayloadTooLarge, ServiceError
from app.ints import parse_ascii_int
from app.logs import REQUEST_ID as REQUEST_ID_VAR

LOG = logging.getLogger("app.errors")
REQUEST_ID = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
BODY_LIMIT = "(setting APP_MAX_BODY_BYTES)"
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
# Generated ids: a random per-process prefix + a counter (uuid4 costs a getrandom syscall per request).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def error_body(path: str, code: str, message: str) -> bytes:
    if path == "/v2" or path.startswith("/v2/"):
        return orjson.dumps({"error": message, "code": code})
    return orjson.dumps({"error": {"code": code, "message": message}})


def error_response(path: str, exc: ServiceError) -> Response:
    body = error_body(path, exc.code, exc.message)
    return Response(body, status_code=exc.status, headers=exc.headers, media_type="application/json")


async def _service_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ServiceError):  # pragma: no cover - registered for ServiceError only
        raise exc
    return error_response(request.url.path, exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    errors: list[Any] = list(exc.errors()) if isinstance(exc, RequestValidationError) else []
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ())) or "request"
    message = f"{where}: {first.get('msg', 'invalid request')}"
    return error_response(request.url.path, ServiceError(message, code="invalid_request", status=422))


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else "error"
    code = _HTTP_CODES.get(status, "http_error")
    response = error_response(request.url.path, ServiceError(str(detail), code=code, status=status))
    if isinstance(exc, StarletteHTTPException) and exc.headers:  # e.g. 405's Allow (RFC 9110 requires it)
        response.headers.update(exc.headers)
    return response


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


class RequestContextMiddleware:
    """Assigns/echoes ``x-request-id``, refuses oversized declared bodies, and turns crashes into a logged 500."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        REQUEST_ID_VAR.set(rid)  # this request's task only: uvicorn runs each request in its own task
        scope.setdefault("state", {})["request_id"] = rid
        rid_header = (REQUEST_ID.encode(), rid.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        too_big = _declared_too_big(scope, self.max_body_bytes)
        if too_big is not None:
            await _send_error(scope, send_with_id, too_big)
            return
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            LOG.exception("unhandled error; request_id=%s %s %s", rid, scope.get("method"), scope.get("path"))
            if started:
                raise
            await _send_error(scope, send_with_id, ServiceError(f"internal error (request id {rid})"))


def _request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            text: str = value.decode("latin-1")
            if _SAFE_ID.match(text):
                return text
            break
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _declared_too_big(scope: Scope, limit: int) -> ServiceError | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            length = parse_ascii_int(value)
            if length is None:
                return ServiceError("Content-Length must be a non-negative integer", code="invalid_header", status=400)
            if length > limit:
                return PayloadTooLarge(f"the body of {length} bytes exceeds the limit of {limit} bytes {BODY_LIMIT}")
    return None


async def _send_error(scope: Scope, send: Send, exc: ServiceError) -> None:
    body = error_body(scope.get("path", ""), exc.code, exc.message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
