"""OpenAPI documentation of the KServe v2 routes: path parameters, the infer body, every response.

The infer routes are plain Starlette routes on the hot path (no FastAPI signature to read), so their
parameters and bodies are declared here, in ``openapi_extra``, by hand after the Open Inference Protocol.
"""

from __future__ import annotations

from typing import Any

from app.errors import codes_with_status
from app.protocol import DATATYPES

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
}
_DATATYPE: dict[str, Any] = {"type": "string", "enum": [*sorted(DATATYPES), "BYTES"]}
_SHAPE: dict[str, Any] = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_PARAMS: dict[str, Any] = {"type": "object", "additionalProperties": True}
INFER_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {**_PARAMS, "description": "`priority` (1/'high' or >1/'low'), `timeout` (µs), "
                       "`binary_data_output`"},
        "inputs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "shape", "datatype"],
            "properties": {"name": {"type": "string"}, "shape": _SHAPE, "datatype": _DATATYPE,
                           "parameters": {**_PARAMS, "description": "`binary_data_size` (binary tensor extension)"},
                           "data": {"description": "row-major values, flat or nested"}}}},
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}, "parameters": {**_PARAMS, "description": "`binary_data`"}}}},
    },
}  # fmt: skip
INFER_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["model_name", "model_version", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["name", "datatype", "shape"],
            "properties": {"name": {"type": "string"}, "datatype": _DATATYPE, "shape": _SHAPE,
                           "data": {"type": "array"}, "parameters": _PARAMS}}},
    },
}  # fmt: skip
CTR_EXAMPLE: dict[str, Any] = {
    "id": "r1",
    "inputs": [
        {"name": "dense", "datatype": "FP32", "shape": [1, 13], "data": [0.0] * 13},
        {"name": "sparse", "datatype": "INT64", "shape": [1, 26], "data": [1] * 26},
    ],
}
MODEL_PARAM: dict[str, Any] = {
    "name": "model",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "example": "ad-ctr",
}
VERSION_PARAM: dict[str, Any] = {
    "name": "version", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"},
    "description": "a positive integer (ASCII digits)", "example": "1",
}  # fmt: skip


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The v2 error body for each status, and as the ``default`` response (any other status has it too)."""
    body = {"content": {"application/json": {"schema": ERROR}}}
    out: dict[int | str, dict[str, Any]] = {s: {"description": _WHY.get(s, "error"), **body} for s in statuses}
    out["default"] = {"description": "any other error (same body)", **body}
    return out


V2_CODES = (
    "invalid_input", "invalid_json", "invalid_version", "invalid_header", "invalid_parameter", "datatype_mismatch",
    "shape_mismatch", "index_out_of_range", "unsupported", "unauthorized", "forbidden", "model_not_found", "not_found",
    "payload_too_large", "model_not_ready", "overloaded", "deadline_exceeded",
)  # fmt: skip
"""The codes a v2 route can answer; their statuses come from :data:`app.errors.CATALOGUE`."""
_WHY = {s: ", ".join(codes_with_status(s, V2_CODES)) for s in (400, 401, 403, 404, 413, 503, 504)}


def json_ok(schema: dict[str, Any], description: str = "OK") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


def infer_extra(with_version: bool) -> dict[str, Any]:
    """``openapi_extra`` of ``POST .../infer``: parameters, JSON body with an example, responses."""
    ok = {
        "description": "outputs; with binary outputs requested, a JSON header (length in "
        "`Inference-Header-Content-Length`) followed by raw tensor bytes",
        "content": {"application/json": {"schema": INFER_RESPONSE},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }  # fmt: skip
    responses = {"200": ok, **{str(k): v for k, v in errors(400, 404, 413, 503, 504).items()}}
    return {
        "parameters": [MODEL_PARAM, *([VERSION_PARAM] if with_version else [])],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": INFER_REQUEST, "examples": {"ad-ctr": {"value": CTR_EXAMPLE}}}},
        },
        "responses": responses,
    }


SERVER_METADATA: dict[str, Any] = {
    "type": "object", "required": ["name", "version", "extensions"],
    "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                   "extensions": {"type": "array", "items": {"type": "string"}}},
}  # fmt: skip
_TENSOR: dict[str, Any] = {"type": "object", "required": ["name", "datatype", "shape"],
           "properties": {"name": {"type": "string"}, "datatype": _DATATYPE, "shape": {"type": "array", "items": {"type": "integer"}}}}  # fmt: skip
MODEL_METADATA: dict[str, Any] = {
    "type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"],
    "properties": {"name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                   "platform": {"type": "string"}, "inputs": {"type": "array", "items": _TENSOR},
                   "outputs": {"type": "array", "items": _TENSOR}},
}  # fmt: skip
MODEL_READY: dict[str, Any] = {"type": "object", "required": ["name", "ready"],
               "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}}  # fmt: skip
INDEX: dict[str, Any] = {
    "type": "array",
    "items": {"type": "object", "required": ["name", "version", "state", "reason"],
              "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                             "state": {"type": "string", "enum": ["LOADING", "READY", "UNLOADING", "UNAVAILABLE"]},
                             "reason": {"type": "string", "description": "why it is not READY (no host paths)"}}},
}  # fmt: skip
INDEX_BODY: dict[str, Any] = {
    "required": False,
    "content": {"application/json": {"schema": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                                     "example": {"ready": True}}},
}  # fmt: skip
EMPTY: dict[str, Any] = {"type": "object"}
