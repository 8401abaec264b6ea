"""``POST /v1/chat``: intent, confidence, a retrieved reply (or a handoff) for one customer message."""

from __future__ import annotations

from fastapi import FastAPI

from app.api.deps import add_hot_route, task_endpoint
from app.schemas.chat import ChatRequest, ChatResponse
from app.service import parse_chat_request

_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}  # fmt: skip

chat = task_endpoint("chat", lambda s: s.chat_model, parse_chat_request, "chat")


def register(app: FastAPI) -> None:
    add_hot_route(app, "/v1/chat", chat, response_model=ChatResponse, openapi_extra=_BODY)
