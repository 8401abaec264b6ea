"""``POST /v1/ads/ctr``: score ad candidates for one impression."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from app.api.deps import add_hot_route, get_service, json_response, read_body, request_options
from app.schemas.ctr import CtrRequest, CtrResponse
from app.service import parse_ctr_request

_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": CtrRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}  # fmt: skip


async def score_ctr(request: Request) -> Response:
    """Each candidate row = ``context`` merged with the candidate's ``features``; scores come back in order."""
    svc = get_service(request)
    with svc.observe("ctr", svc.settings.ctr_model) as obs:
        opts = request_options(request, svc.settings.default_timeout_ms)
        body = await read_body(request, svc.settings.max_body_bytes)
        result = await svc.score_ctr(parse_ctr_request(body), opts, obs)
    return json_response(result)


def register(app: FastAPI) -> None:
    add_hot_route(app, "/v1/ads/ctr", score_ctr, response_model=CtrResponse, openapi_extra=_BODY)
