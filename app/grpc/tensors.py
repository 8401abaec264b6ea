"""KServe v2 gRPC tensors <-> numpy: typed ``contents`` or ``raw_input_contents`` in, ``raw_output_contents`` out.

The decoded request is the transport-free :class:`app.protocol.InferRequest` the HTTP codec produces, so both
protocols feed the same validation, batcher and runtime. Every defect raises ``InvalidInput`` (INVALID_ARGUMENT).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from app.errors import InvalidInput
from app.grpc.generated import grpc_service_pb2 as pb
from app.protocol import DATATYPES, InferRequest, RequestedOutput, datatype_of

# datatype -> the InferTensorContents field that carries it (FP16 and BYTES have none here: send them raw)
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}  # fmt: skip


def parameter_value(p: Any) -> Any:
    """``InferParameter`` (a oneof) -> its Python value; an empty parameter is ``None``."""
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: parameter_value(v) for k, v in params.items()}


def decode_infer_request(msg: pb.ModelInferRequest) -> InferRequest:
    """``ModelInferRequest`` -> :class:`InferRequest`; raw contents are used when present (then for every input)."""
    if not msg.inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(msg.inputs)} inputs; send every input raw or none"
        )
    req = InferRequest({}, {}, id=msg.id or None, parameters=parameters(msg.parameters))
    for i, tensor in enumerate(msg.inputs):
        name = tensor.name
        if not name:
            raise InvalidInput("every input needs a name")
        if name in req.inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        req.inputs[name] = _decode_tensor(tensor, raw[i] if raw else None)
        req.datatypes[name] = tensor.datatype
    if msg.outputs:
        req.outputs = [RequestedOutput(o.name) for o in msg.outputs]
    return req


def _decode_tensor(tensor: Any, raw: bytes | None) -> np.ndarray:
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
    if datatype == "BYTES":
        raise InvalidInput(f"input {name!r}: BYTES tensors are not supported by this server", code="unsupported")
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r} (one of {sorted(DATATYPES)})")
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if "shared_memory_region" in tensor.parameters:
        raise InvalidInput("shared-memory tensors are not supported", code="unsupported")
    count = math.prod(shape)
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise InvalidInput(f"input {name!r}: {len(raw)} raw bytes do not match shape {shape} x {datatype}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"input {name!r}: {datatype} tensors must be sent in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInput(f"input {name!r}: {len(values)} values in contents.{field} do not fill shape {shape}")
    try:
        return np.asarray(values, dtype=np.result_type(dtype.newbyteorder("="))).reshape(shape)
    except OverflowError:
        raise InvalidInput(f"input {name!r}: values do not fit {dtype.name}") from None


def encode_infer_response(
    model: str, version: int, outputs: Mapping[str, np.ndarray], request: InferRequest
) -> pb.ModelInferResponse:
    """Every output as raw little-endian bytes (what Triton answers; ``InferResult.as_numpy`` reads it)."""
    resp = pb.ModelInferResponse(model_name=model, model_version=str(version), id=request.id or "")
    wanted = [o.name for o in request.outputs] if request.outputs else list(outputs)
    for name in wanted:
        arr = np.ascontiguousarray(outputs[name])
        resp.outputs.add(name=name, datatype=datatype_of(arr), shape=arr.shape)
        resp.raw_output_contents.append(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return resp
