"""KServe v2 tensor codec: JSON (flat and nested), the binary data extension, and every malformed case."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from app.errors import InvalidInput
from app.protocol import InferRequest, decode_infer_request, encode_infer_response


def body(**doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_flat_and_nested_json_data() -> None:
    flat = {"name": "a", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}
    nested = {"name": "b", "datatype": "INT64", "shape": [2, 2], "data": [[1, 2], [3, 4]]}
    req = decode_infer_request(body(id="r1", inputs=[flat, nested], outputs=[{"name": "y"}]))
    assert req.id == "r1" and req.inputs["a"].dtype == np.float32 and req.inputs["b"].dtype == np.int64
    assert req.inputs["a"].tolist() == [[1, 2], [3, 4]] and req.inputs["b"].tolist() == [[1, 2], [3, 4]]
    assert req.datatypes == {"a": "FP32", "b": "INT64"} and [o.name for o in req.outputs or []] == ["y"]


def test_binary_inputs() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(4, dtype=np.int64).reshape(2, 2)
    header = orjson.dumps({"inputs": [
        {"name": "a", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": a.nbytes}},
        {"name": "b", "datatype": "INT64", "shape": [2, 2], "parameters": {"binary_data_size": b.nbytes}},
    ]})  # fmt: skip
    req = decode_infer_request(header + a.tobytes() + b.tobytes(), str(len(header)))
    np.testing.assert_array_equal(req.inputs["a"], a)
    np.testing.assert_array_equal(req.inputs["b"], b)


def test_json_and_binary_outputs() -> None:
    out: dict[str, np.ndarray] = {
        "y": np.array([[0.25], [0.5]], dtype=np.float32),
        "z": np.array([1, 2], dtype=np.int64),
    }
    content, headers = encode_infer_response("m", 3, out, InferRequest({}, {}, id="q"))
    assert headers["content-type"] == "application/json"
    doc = json.loads(content)
    assert doc["model_name"] == "m" and doc["model_version"] == "3" and doc["id"] == "q"
    assert doc["outputs"][0] == {"name": "y", "datatype": "FP32", "shape": [2, 1], "data": [0.25, 0.5]}
    content, headers = encode_infer_response("m", 3, out, InferRequest({}, {}, parameters={"binary_data_output": True}))
    n = int(headers["inference-header-content-length"])
    doc = json.loads(content[:n])
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 8}
    np.testing.assert_array_equal(np.frombuffer(content[n : n + 8], np.float32), [0.25, 0.5])
    np.testing.assert_array_equal(np.frombuffer(content[n + 8 :], np.int64), [1, 2])


def _tensor(**over: object) -> dict[str, object]:
    return {"name": "a", "datatype": "FP32", "shape": [1, 2], "data": [1, 2], **over}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (body(inputs=[]), "invalid_input"),
        (body(inputs="x"), "invalid_input"),
        (body(inputs=[_tensor(name=None)]), "invalid_input"),
        (body(inputs=[_tensor(datatype="FP99")]), "invalid_input"),
        (body(inputs=[_tensor(datatype="BYTES")]), "unsupported"),
        (body(inputs=[_tensor(shape=[1, -2])]), "invalid_input"),
        (body(inputs=[_tensor(shape="1x2")]), "invalid_input"),
        (body(inputs=[_tensor(data=[1, 2, 3])]), "invalid_input"),
        (body(inputs=[_tensor(data=[[1], [2, 3]])]), "invalid_input"),
        (body(inputs=[_tensor(data=["a", "b"])]), "invalid_input"),
        (body(inputs=[_tensor(datatype="INT64", data=[1.5, 2])]), "invalid_input"),
        (body(inputs=[_tensor(datatype="INT64", data=[2**70, 1])]), "invalid_input"),
        (body(inputs=[_tensor(), _tensor()]), "invalid_input"),
        (body(inputs=[{"name": "a", "datatype": "FP32", "shape": [1]}]), "invalid_input"),
        (body(inputs=[_tensor()], outputs=[{"nom": "y"}]), "invalid_input"),
        (body(inputs=[_tensor()], parameters=[1]), "invalid_input"),
        (body(id=5, inputs=[_tensor()]), "invalid_input"),
    ],
)
def test_malformed_requests(raw: bytes, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_infer_request(raw)
    assert info.value.code == code and info.value.status == 400


def test_malformed_binary_requests() -> None:
    header = orjson.dumps({"inputs": [_tensor(data=None, parameters={"binary_data_size": 8})]})
    with pytest.raises(InvalidInput):
        decode_infer_request(header + b"\0" * 4, str(len(header)))  # too few bytes
    with pytest.raises(InvalidInput):
        decode_infer_request(header + b"\0" * 12, str(len(header)))  # bytes left over
    with pytest.raises(InvalidInput) as info:
        decode_infer_request(header, "abc")
    assert info.value.code == "invalid_header"
    with pytest.raises(InvalidInput):
        decode_infer_request(header, str(len(header) + 5))


@pytest.mark.parametrize(
    ("params", "priority"),
    [
        ({"priority": "high"}, "HIGH"),
        ({"priority": 1}, "HIGH"),
        ({"priority": 2}, "LOW"),
        ({"priority": 0}, "LOW"),
        ({}, "LOW"),
    ],
)
def test_kserve_priority_parameter(params: dict[str, object], priority: str) -> None:
    from app.request_options import RequestOptions
    from app.service import _with_parameters

    assert _with_parameters(RequestOptions(), params).priority.name == priority


def test_kserve_timeout_parameter_tightens_the_deadline() -> None:
    import time

    from app.request_options import RequestOptions
    from app.service import _with_parameters

    now = time.monotonic()
    opts = _with_parameters(RequestOptions(deadline=now + 10), {"timeout": 50_000})  # µs
    assert opts.deadline is not None and now < opts.deadline < now + 1
    assert _with_parameters(RequestOptions(deadline=now + 0.001), {"timeout": 10**9}).deadline == now + 0.001
    for bad in ({"timeout": 0}, {"timeout": "5"}, {"priority": True}, {"priority": "urgent"}):
        with pytest.raises(InvalidInput):
            _with_parameters(RequestOptions(), bad)
