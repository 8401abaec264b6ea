"""Open Inference Protocol (KServe v2) tensor codec: JSON tensors plus the binary tensor data extension.

Spec: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ and Triton's
``binary_tensor_data`` extension (``Inference-Header-Content-Length`` splits the body into a JSON header and
raw little-endian row-major tensor bytes, sized by each tensor's ``parameters.binary_data_size``).
Pure numpy + orjson: no web framework, so every transport can reuse it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from app.errors import InvalidInput
from app.ints import parse_ascii_int

HEADER_LENGTH = "inference-header-content-length"

DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(t).newbyteorder("<")
    for name, t in {
        "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
        "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
        "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    }.items()
}  # fmt: skip
_BY_DTYPE = {dt.newbyteorder("="): name for name, dt in DATATYPES.items()}
# numpy kinds a JSON array may hold for each target kind (ints may feed floats, never the reverse)
_ACCEPTED_KINDS = {"b": "b", "u": "iub", "i": "iub", "f": "iufb"}


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None


@dataclass
class InferRequest:
    """A decoded ``POST .../infer`` body."""

    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def datatype_of(arr: np.ndarray) -> str:
    try:
        return _BY_DTYPE[arr.dtype.newbyteorder("=")]
    except KeyError:
        raise InvalidInput(f"tensor dtype {arr.dtype} has no KServe datatype") from None


def decode_infer_request(body: bytes, header_length: str | None = None) -> InferRequest:
    """Parse a JSON (optionally binary-extended) inference request; every defect raises ``InvalidInput``."""
    json_part, binary = body, memoryview(b"")
    if header_length is not None:
        n = parse_ascii_int(header_length)
        if n is None:
            raise InvalidInput("Inference-Header-Content-Length must be an integer", code="invalid_header")
        if not 0 < n <= len(body):
            raise InvalidInput(f"Inference-Header-Content-Length {n} is outside the body of {len(body)} bytes")
        json_part, binary = body[:n], memoryview(body)[n:]
    try:
        doc = orjson.loads(json_part)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"the body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object", code="invalid_json")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    req = InferRequest({}, {}, id=_opt_str(doc, "id"), parameters=_params(doc, "request"))
    offset = 0
    for raw in raw_inputs:
        name, arr, used = _decode_tensor(raw, binary, offset)
        if name in req.inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        req.inputs[name], req.datatypes[name] = arr, raw["datatype"]
        offset += used
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    if "outputs" in doc and doc["outputs"] is None:  # the schema types it as an array: omit it for every output
        raise InvalidInput("'outputs' must be a list of requested outputs (omit it for all), not null")
    req.outputs = _decode_outputs(doc.get("outputs"))
    return req


def _opt_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"'{key}' must be a string")
    return value


def _params(doc: dict[str, Any], where: str) -> dict[str, Any]:
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"{where} 'parameters' must be an object")
    return params


def _decode_tensor(raw: Any, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise InvalidInput("every input needs a string 'name'")
    name, datatype, shape = raw["name"], raw.get("datatype"), raw.get("shape")
    if datatype == "BYTES":
        raise InvalidInput(f"input {name!r}: BYTES tensors are not supported by this server", code="unsupported")
    dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r} (one of {sorted(DATATYPES)})")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInput(f"input {name!r}: 'shape' must be a list of non-negative integers")
    params = _params(raw, f"input {name!r}")
    if "shared_memory_region" in params:
        raise InvalidInput("shared-memory tensors are not supported", code="unsupported")
    count = math.prod(shape)
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize or offset + size > len(binary):
            raise InvalidInput(f"input {name!r}: binary_data_size {size!r} does not match shape {shape} x {datatype}")
        arr = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)
        return name, arr.astype(dtype.newbyteorder("="), copy=False), size
    if "data" not in raw:
        raise InvalidInput(f"input {name!r} has neither 'data' nor binary_data_size")
    return name, _from_json(name, raw["data"], dtype, shape, count), 0


def _from_json(name: str, data: Any, dtype: np.dtype, shape: list[int], count: int) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    try:
        parsed = np.asarray(data)
    except ValueError:
        raise InvalidInput(f"input {name!r}: 'data' is ragged or not numeric") from None
    if parsed.size and parsed.dtype.kind not in _ACCEPTED_KINDS.get(dtype.kind, ""):
        raise InvalidInput(f"input {name!r}: 'data' holds {parsed.dtype.kind!r}-kind values, not {dtype.name}")
    if parsed.size != count:
        raise InvalidInput(f"input {name!r}: {parsed.size} values do not fill shape {shape}")
    try:
        return parsed.astype(dtype.newbyteorder("="), casting="unsafe").reshape(shape)
    except (ValueError, OverflowError):
        raise InvalidInput(f"input {name!r}: values do not fit {dtype.name}") from None


def _decode_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidInput("'outputs' must be a list")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("every requested output needs a string 'name'")
        binary = _params(item, f"output {item['name']!r}").get("binary_data")
        out.append(RequestedOutput(item["name"], None if binary is None else bool(binary)))
    return out


def encode_infer_response(
    model: str, version: int, outputs: dict[str, np.ndarray], request: InferRequest
) -> tuple[bytes, dict[str, str]]:
    """JSON body, or JSON header + raw tensor bytes when any output asks for binary data; returns body, headers."""
    default_binary = bool(request.parameters.get("binary_data_output", False))
    wanted = request.outputs or [RequestedOutput(n) for n in outputs]
    doc: dict[str, Any] = {"model_name": model, "model_version": str(version)}
    if request.id is not None:
        doc["id"] = request.id
    tensors, blobs = [], []
    for want in wanted:
        arr = np.ascontiguousarray(outputs[want.name])
        tensor: dict[str, Any] = {"name": want.name, "datatype": datatype_of(arr), "shape": list(arr.shape)}
        if want.binary if want.binary is not None else default_binary:
            blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            flat = arr.reshape(-1)
            tensor["data"] = flat.tolist() if flat.dtype == np.float16 else flat  # orjson has no float16
        tensors.append(tensor)
    doc["outputs"] = tensors
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))}
    return b"".join([header, *blobs]), headers
