"""Open Inference Protocol (KServe v2) over HTTP: server/model metadata, readiness, infer, repository."""

from __future__ import annotations

from importlib import metadata

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from app.api.deps import add_hot_route, get_service, json_response, parse_version, read_body, request_options, require_admin
from app.errors import InvalidInput
from app.protocol import HEADER_LENGTH, decode_infer_request, encode_infer_response

EXTENSIONS = ["binary_tensor_data", "model_repository", "parameters"]


def _package_version() -> str:
    try:
        return metadata.version("shopinfer")
    except metadata.PackageNotFoundError:
        return "0.0.0"


VERSION = _package_version()


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


def _ready(request: Request, model: str, version: int | None) -> Response:
    ok = get_service(request).model_ready(model, version)
    return json_response({"name": model, "ready": ok}, status_code=200 if ok else 503)


async def infer(request: Request) -> Response:
    return await _infer(request, request.path_params["model"], None)


async def infer_version(request: Request) -> Response:
    params = request.path_params
    return await _infer(request, params["model"], parse_version(params["version"]))


async def _infer(request: Request, model: str, version: int | None) -> Response:
    svc = get_service(request)
    with svc.observe("v2_infer", model) as obs:
        opts = request_options(request, svc.settings.default_timeout_ms)
        body = await read_body(request, svc.settings.max_body_bytes)
        req = decode_infer_request(body, request.headers.get(HEADER_LENGTH))
        mv, outputs = await svc.infer(model, version, req, opts, obs)
        content, headers = encode_infer_response(model, mv.version, outputs, req)
    return Response(content, headers=headers)


async def repository_index(request: Request) -> Response:
    svc = get_service(request)
    body = await read_body(request, svc.settings.max_body_bytes)
    ready_only = False
    if body.strip():
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidInput("the body is not valid JSON", code="invalid_json") from None
        ready_only = isinstance(doc, dict) and doc.get("ready") is True
    return json_response(svc.repository_index(ready_only))


async def load_model(request: Request, model: str) -> Response:
    require_admin(request)
    await get_service(request).registry.load_model(model)
    return json_response({})


async def unload_model(request: Request, model: str) -> Response:
    require_admin(request)
    await get_service(request).registry.unload_model(model)
    return json_response({})


def register(app: FastAPI) -> None:
    """Inference routes first: they are matched on every request."""
    add_hot_route(app, "/v2/models/{model}/infer", infer)
    add_hot_route(app, "/v2/models/{model}/versions/{version}/infer", infer_version)
    app.add_api_route("/v2", server_metadata, methods=["GET"])
    app.add_api_route("/v2/models/{model}", model_metadata, methods=["GET"])
    app.add_api_route("/v2/models/{model}/versions/{version}", version_metadata, methods=["GET"])
    app.add_api_route("/v2/models/{model}/ready", model_ready, methods=["GET"])
    app.add_api_route("/v2/models/{model}/versions/{version}/ready", version_ready, methods=["GET"])
    app.add_api_route("/v2/repository/index", repository_index, methods=["POST"])
    app.add_api_route("/v2/repository/models/{model}/load", load_model, methods=["POST"])
    app.add_api_route("/v2/repository/models/{model}/unload", unload_model, methods=["POST"])
