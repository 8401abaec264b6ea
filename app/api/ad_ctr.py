"""``POST /v1/ads/ctr``: score ad candidates for one impression.

Each candidate row = ``context`` merged with the candidate's ``features``; scores come back in order.
"""

from __future__ import annotations

from fastapi import FastAPI

from app.api.deps import add_hot_route, task_endpoint
from app.schemas.ctr import CtrRequest, CtrResponse
from app.service import parse_ctr_request

_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": CtrRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}  # fmt: skip

score_ctr = task_endpoint("ctr", lambda s: s.ctr_model, parse_ctr_request, "score_ctr")


def register(app: FastAPI) -> None:
    add_hot_route(app, "/v1/ads/ctr", score_ctr, response_model=CtrResponse, openapi_extra=_BODY)
