"""Open Inference Protocol (KServe v2) over HTTP: server/model metadata, readiness, infer, repository."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from enum import Enum
from importlib import metadata
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from app import tracing
from app.api import openapi_v2 as doc
from app.api.deps import (
    MODEL_VERSION_HEADER,
    RawResponse,
    add_hot_route,
    get_service,
    json_response,
    parse_version,
    read_body,
    request_options,
    require_admin,
)
from app.errors import InvalidInput, ModelNotFound
from app.model_config import model_config_json
from app.pod import broadcast
from app.protocol import HEADER_LENGTH, decode_infer_request, encode_infer_response
from app.rollout.policy import Policy, PolicyError, promote_change, set_change, update_policy
from app.rollout.summary import rollout_summary
from app.service import InferenceService

EXTENSIONS = ["binary_tensor_data", "model_repository", "parameters"]
UNKNOWN = "_unknown_"
# a directory part of an absolute path (POSIX or Windows drive), not inside a relative one like "ad-ctr/2/x"
_HOST_DIRS = re.compile(r"(?<![\w.\-/])(?:[A-Za-z]:)?(?:[/\\][^/\\\s'\":]+)+[/\\]")


_TENSOR_CONFIG: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "data_type": {"type": "string"},
        "dims": {"type": "array", "items": {"type": "integer"}},
    },
}
MODEL_CONFIG: dict[str, Any] = {"type": "object", "required": ["name", "platform", "max_batch_size", "input", "output"],
                                "properties": {"name": {"type": "string"}, "platform": {"type": "string"},
                                               "backend": {"type": "string"}, "max_batch_size": {"type": "integer"},
                                               "input": {"type": "array", "items": _TENSOR_CONFIG},
                                               "output": {"type": "array", "items": _TENSOR_CONFIG},
                                               "dynamic_batching": {"type": "object"}}}  # fmt: skip
"""``GET /v2/models/{model}/config``: Triton's model configuration as JSON (what ``app.grpc.kserve`` serves)."""


def _package_version() -> str:
    try:
        return metadata.version("shopinfer")
    except metadata.PackageNotFoundError:
        return "0.0.0"


VERSION = _package_version()


def metric_model(svc: InferenceService, model: str) -> str:
    """The metrics label for a caller-chosen model name: only names the repository knows, else ``_unknown_``
    (20,000 random names must not become 20,000 label series)."""
    try:
        svc.registry.resolve_name(model)
    except ModelNotFound:
        return UNKNOWN
    return model


def scrub_host_paths(reason: str) -> str:
    """Keep a reason's meaning, drop the host's directories (``/srv/models/ad-ctr/2/model.onnx`` -> ``model.onnx``)."""
    return _HOST_DIRS.sub("", reason)


async def server_metadata(request: Request) -> Response:
    name = get_service(request).settings.server_name
    return json_response({"name": name, "version": VERSION, "extensions": EXTENSIONS})


async def model_metadata(request: Request, model: str) -> Response:
    return json_response(get_service(request).model_metadata(model, None))


async def version_metadata(request: Request, model: str, version: str) -> Response:
    return json_response(get_service(request).model_metadata(model, parse_version(version)))


async def model_ready(request: Request, model: str) -> Response:
    return _ready(request, model, None)


async def version_ready(request: Request, model: str, version: str) -> Response:
    return _ready(request, model, parse_version(version))


async def model_config(request: Request, model: str) -> Response:
    return json_response(model_config_json(get_service(request), model, None))


async def version_config(request: Request, model: str, version: str) -> Response:
    """Triton's model configuration (batch size, tensors, dynamic batching): perf_analyzer over HTTP reads it."""
    return json_response(model_config_json(get_service(request), model, parse_version(version)))


def _ready(request: Request, model: str, version: int | None) -> Response:
    ok = get_service(request).model_ready(model, version)
    return json_response({"name": model, "ready": ok}, status_code=200 if ok else 503)


async def infer(request: Request) -> Response:
    return await _infer(request, request.path_params["model"], None)


async def infer_version(request: Request) -> Response:
    params = request.path_params
    return await _infer(request, params["model"], params["version"])


async def _infer(request: Request, model: str, raw_version: str | None) -> Response:
    svc = get_service(request)
    with svc.observe("v2_infer", metric_model(svc, model)) as obs:
        version = None if raw_version is None else parse_version(raw_version)
        opts = request_options(request, svc.settings.default_timeout_ms)
        with svc.admit(model, version):  # an overloaded model refuses before the body is read and parsed
            body = await read_body(request, svc.settings.max_body_bytes)
            req = decode_infer_request(body, request.headers.get(HEADER_LENGTH))
            if tracing.ENABLED:
                tracing.mark("parse")
            mv, outputs = await svc.infer(model, version, req, opts, obs)
        content, headers = encode_infer_response(model, mv.version, outputs, req)
        if tracing.ENABLED:
            tracing.mark("postprocess")
    ctype = headers.pop("content-type").encode()
    extra = [(k.encode(), v.encode()) for k, v in headers.items()]
    extra.append((MODEL_VERSION_HEADER, b"%d" % mv.version))
    return RawResponse(content, ctype, extra=extra)


async def repository_index(request: Request) -> Response:
    svc = get_service(request)
    body = await read_body(request, svc.settings.max_body_bytes)
    ready_only = False
    if body.strip():
        try:
            doc_ = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidInput("the body is not valid JSON", code="invalid_json") from None
        ready_only = isinstance(doc_, dict) and doc_.get("ready") is True
    entries = svc.repository_index(ready_only)
    return json_response([{**e, "reason": scrub_host_paths(e["reason"])} for e in entries])


async def load_model(request: Request, model: str) -> Response:
    require_admin(request)
    await get_service(request).registry.load_model(model)
    broadcast("load", model)  # sibling worker processes follow within about a second
    return json_response({})


async def unload_model(request: Request, model: str) -> Response:
    require_admin(request)
    await get_service(request).registry.unload_model(model)
    broadcast("unload", model)
    return json_response({})


async def rollout(request: Request, model: str) -> Response:
    """The model's rollout: policy, requests per version, comparisons, drift and events."""
    svc = get_service(request)
    svc.registry.resolve_name(model)
    families = await asyncio.to_thread(svc.metrics.families)
    policy = svc.registry.policies.get(model)
    return json_response(rollout_summary(model, policy, families, svc.registry.ready_versions(model)))


async def change_rollout(request: Request, model: str) -> Response:
    """Admin: ``{"action": "set"|"promote"|"clear", ...}`` with the command line's options as fields."""
    require_admin(request)
    svc = get_service(request)
    svc.registry.resolve_name(model)
    body = await read_body(request, svc.settings.max_body_bytes)
    try:
        doc_ = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidInput("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(doc_, dict):
        raise InvalidInput("the body must be a JSON object", code="invalid_json")
    action = doc_.pop("action", None)
    change: Callable[[Policy | None], Policy | None]
    try:
        if action == "set":
            known = {"stable", "canary", "weight", "sticky", "shadow", "shadow_rate", "limits"}
            if unknown := set(doc_) - known:
                raise PolicyError("bad_policy", f"unknown fields {sorted(unknown)}; set takes {sorted(known)}")
            change = set_change(**doc_)
        elif action == "promote":
            change = promote_change
        elif action == "clear":
            change = _clear
        else:
            raise PolicyError("bad_policy", f"action {action!r}: use 'set', 'promote' or 'clear'")
        policy = await asyncio.to_thread(update_policy, svc.registry.root, model, change)
    except (PolicyError, TypeError) as e:
        reason = getattr(e, "reason", "bad_policy")
        raise InvalidInput(f"{reason}: {e}", code="bad_policy", status=422) from None
    await svc.registry.sync(only=model)
    broadcast("sync", model)  # sibling workers rescan now (a sync: an unloaded model stays unloaded)
    return json_response({"policy": None if policy is None else policy.model_dump(mode="json")})


def _clear(_: Policy | None) -> None:
    return None


def register(app: FastAPI) -> None:
    """Inference routes first: they are matched on every request."""
    tags: list[str | Enum] = ["KServe v2"]
    add_hot_route(
        app,
        "/v2/models/{model}/infer",
        infer,
        summary="Infer (newest ready version)",
        tags=tags,
        openapi_extra=doc.infer_extra(False),
        name="v2_infer",
    )
    add_hot_route(
        app,
        "/v2/models/{model}/versions/{version}/infer",
        infer_version,
        summary="Infer (one version)",
        tags=tags,
        openapi_extra=doc.infer_extra(True),
        name="v2_infer_version",
    )
    ready_503: dict[int | str, Any] = {
        503: {"description": "not ready", "content": {"application/json": {"schema": doc.MODEL_READY}}}
    }

    def get(
        path: str,
        endpoint: Any,
        schema: dict[str, Any],
        *err: int,
        extra: dict[int | str, Any] | None = None,
        summary: str = "",
    ) -> None:
        responses = {**doc.errors(*err), **doc.json_ok(schema), **(extra or {})}
        app.add_api_route(path, endpoint, methods=["GET"], responses=responses, tags=tags, summary=summary)

    get("/v2", server_metadata, doc.SERVER_METADATA, summary="Server metadata")
    get("/v2/models/{model}", model_metadata, doc.MODEL_METADATA, 404, 503, summary="Model metadata")
    get(
        "/v2/models/{model}/versions/{version}",
        version_metadata,
        doc.MODEL_METADATA,
        400,
        404,
        503,
        summary="Version metadata",
    )
    get("/v2/models/{model}/ready", model_ready, doc.MODEL_READY, 404, extra=ready_503, summary="Model readiness")
    get(
        "/v2/models/{model}/versions/{version}/ready",
        version_ready,
        doc.MODEL_READY,
        400,
        404,
        extra=ready_503,
        summary="Version readiness",
    )
    get("/v2/models/{model}/config", model_config, MODEL_CONFIG, 404, 503, summary="Model configuration (Triton)")
    get(
        "/v2/models/{model}/versions/{version}/config",
        version_config,
        MODEL_CONFIG,
        400,
        404,
        503,
        summary="Version configuration (Triton)",
    )
    app.add_api_route(
        "/v2/repository/index",
        repository_index,
        methods=["POST"],
        tags=tags,
        summary="Every version with its state",
        openapi_extra={"requestBody": doc.INDEX_BODY},
        responses={**doc.errors(400, 413), **doc.json_ok(doc.INDEX)},
    )
    get("/v2/models/{model}/rollout", rollout, {"type": "object"}, 404, summary="Rollout summary")
    app.add_api_route(
        "/v2/models/{model}/rollout",
        change_rollout,
        methods=["POST"],
        tags=tags,
        summary="Change the rollout policy (bearer token)",
        responses={**doc.errors(401, 403, 404, 422), **doc.json_ok({"type": "object"})},
    )
    control = {**doc.errors(401, 403, 404, 503), **doc.json_ok(doc.EMPTY)}
    app.add_api_route(
        "/v2/repository/models/{model}/load",
        load_model,
        methods=["POST"],
        tags=tags,
        summary="Load a model now (bearer token)",
        responses=control,
    )
    app.add_api_route(
        "/v2/repository/models/{model}/unload",
        unload_model,
        methods=["POST"],
        tags=tags,
        summary="Unload a model (bearer token)",
        responses=control,
    )
