"""``POST /v1/chat``: intent, confidence, a retrieved reply (or a handoff) for one customer message."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from app.api.deps import add_hot_route, get_service, json_response, read_body, request_options
from app.schemas.chat import ChatRequest, ChatResponse
from app.service import parse_chat_request

_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}  # fmt: skip


async def chat(request: Request) -> Response:
    svc = get_service(request)
    with svc.observe("chat", svc.settings.chat_model) as obs:
        opts = request_options(request, svc.settings.default_timeout_ms)
        body = await read_body(request, svc.settings.max_body_bytes)
        result = await svc.chat(parse_chat_request(body), opts, obs)
    return json_response(result)


def register(app: FastAPI) -> None:
    add_hot_route(app, "/v1/chat", chat, response_model=ChatResponse, openapi_extra=_BODY)
