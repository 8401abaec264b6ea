"""KServe v2 over HTTP in-process: metadata, readiness, infer (JSON and binary), repository API, errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from app.tasks.ctr.features import CtrFeaturizer
from tests.fixtures.asgi import AppUnderTest, running_app
from tests.fixtures.checks import expect_status
from tests.fixtures.ctr_model import raw_records, reference_scores

INFER = "/v2/models/ad-ctr/infer"


@pytest.fixture
async def svc(ctr_repo: Path) -> Any:
    async with running_app(ctr_repo, admin_token="t0ken") as under_test:
        yield under_test


def features(repo: Path, n: int) -> dict[str, np.ndarray]:
    return CtrFeaturizer.load(repo / "ad-ctr" / "1" / "preprocess.json").transform_records(raw_records(n))


def json_request(x: dict[str, np.ndarray], **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "dense", "datatype": "FP32", "shape": list(x["dense"].shape), "data": x["dense"].tolist()},
            {
                "name": "sparse",
                "datatype": "INT64",
                "shape": list(x["sparse"].shape),
                "data": x["sparse"].ravel().tolist(),
            },
        ],
        **extra,
    }


async def test_server_and_model_metadata(svc: AppUnderTest) -> None:
    meta = (await svc.client.get("/v2")).json()
    assert meta["name"] == "shopinfer" and "binary_tensor_data" in meta["extensions"] and meta["version"]
    for path in ("/v2/models/ad-ctr", "/v2/models/ad-ctr/versions/1"):
        m = (await svc.client.get(path)).json()
        assert m == {
            "name": "ad-ctr", "versions": ["1"], "platform": "onnxruntime_onnx",
            "inputs": [{"name": "dense", "datatype": "FP32", "shape": [-1, 13]},
                       {"name": "sparse", "datatype": "INT64", "shape": [-1, 26]}],
            "outputs": [{"name": "pctr", "datatype": "FP32", "shape": [-1, 1]}],
        }  # fmt: skip
    assert (await svc.client.get("/v2/models/ad-ctr/ready")).json() == {"name": "ad-ctr", "ready": True}
    expect_status(await svc.client.get("/v2/models/ad-ctr/versions/1/ready"), 200)
    assert (await svc.client.get("/v2/health/ready")).json() == {"ready": True}


async def test_json_infer_matches_onnxruntime(svc: AppUnderTest, ctr_repo: Path) -> None:
    x = features(ctr_repo, 6)
    r = await svc.client.post(INFER, json=json_request(x, id="req-1", outputs=[{"name": "pctr"}]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "ad-ctr" and body["model_version"] == "1" and body["id"] == "req-1"
    out = body["outputs"][0]
    assert out["name"] == "pctr" and out["datatype"] == "FP32" and out["shape"] == [6, 1]
    expected = reference_scores(ctr_repo / "ad-ctr" / "1", raw_records(6))
    np.testing.assert_allclose(out["data"], expected, atol=1e-6)


async def test_binary_infer(svc: AppUnderTest, ctr_repo: Path) -> None:
    x = features(ctr_repo, 3)
    header = orjson.dumps({
        "inputs": [
            {"name": "dense", "datatype": "FP32", "shape": [3, 13], "parameters": {"binary_data_size": x["dense"].nbytes}},
            {"name": "sparse", "datatype": "INT64", "shape": [3, 26], "parameters": {"binary_data_size": x["sparse"].nbytes}},
        ],
        "outputs": [{"name": "pctr", "parameters": {"binary_data": True}}],
    })  # fmt: skip
    content = header + x["dense"].tobytes() + x["sparse"].tobytes()
    r = await svc.client.post("/v2/models/ad-ctr/versions/1/infer", content=content,
                              headers={"Inference-Header-Content-Length": str(len(header))})  # fmt: skip
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    doc = json.loads(r.content[:n])
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 12}
    got = np.frombuffer(r.content[n:], dtype=np.float32)
    np.testing.assert_allclose(got, reference_scores(ctr_repo / "ad-ctr" / "1", raw_records(3)), atol=1e-6)


def _mutate(x: dict[str, np.ndarray], **change: Any) -> dict[str, Any]:
    req = json_request(x)
    for i, key in ((0, "dense"), (1, "sparse")):
        req["inputs"][i].update(change.get(key, {}))
    return req


def bad_v2_cases(x: dict[str, np.ndarray]) -> list[tuple[str, Any, int, str]]:
    return [
        (INFER, _mutate(x, dense={"datatype": "FP64"}), 400, "datatype_mismatch"),
        (INFER, _mutate(x, dense={"shape": [1, 26], "data": [0.0] * 26}), 400, "shape_mismatch"),
        (INFER, _mutate(x, sparse={"shape": [1, 26], "data": [0] * 26}), 400, "shape_mismatch"),
        (INFER, _mutate(x, sparse={"name": "spars"}), 400, "invalid_input"),
        (INFER, {"inputs": json_request(x)["inputs"][:1]}, 400, "invalid_input"),
        (INFER, {**json_request(x), "outputs": [{"name": "nope"}]}, 400, "invalid_input"),
        (INFER, _mutate(x, dense={"data": [[1.0, 2.0]]}), 400, "invalid_input"),
        (INFER, {**json_request(x), "parameters": {"priority": "urgent"}}, 400, "invalid_parameter"),
        (INFER, {**json_request(x), "parameters": {"timeout": -5}}, 400, "invalid_parameter"),
        ("/v2/models/nope/infer", json_request(x), 404, "model_not_found"),
        ("/v2/models/ad-ctr/versions/7/infer", json_request(x), 404, "model_not_found"),
        ("/v2/models/ad-ctr/versions/x/infer", json_request(x), 400, "invalid_version"),
        ("/v2/models/ad-ctr/versions/0/infer", json_request(x), 400, "invalid_version"),
        ("/v2/models/..%2F..%2Fetc/infer", json_request(x), 404, "not_found"),  # %2F decodes: no route
        ("/v2/models/%2E%2E/infer", json_request(x), 404, "model_not_found"),
        ("/v2/models/.hidden/infer", json_request(x), 404, "model_not_found"),
        ("/v2/models/ad-ctr/../../etc/passwd", json_request(x), 404, "not_found"),
    ]


async def test_bad_requests_are_coded_and_a_good_one_still_succeeds(svc: AppUnderTest, ctr_repo: Path) -> None:
    x = features(ctr_repo, 2)
    cases = bad_v2_cases(x)
    good = svc.client.post(INFER, json=json_request(x))
    results = await asyncio.gather(good, *(svc.client.post(url, json=body) for url, body, _, _ in cases))
    expect_status(results[0], 200)
    for (url, _, status, code), r in zip(cases, results[1:], strict=True):
        assert (r.status_code, r.json().get("code")) == (status, code), (url, r.text)
        assert isinstance(r.json()["error"], str) and r.json()["error"]
    r = await svc.client.post(INFER, content=b"{oops")
    assert r.status_code == 400 and r.json() == {"error": r.json()["error"], "code": "invalid_json"}, (
        r.status_code,
        r.text,
    )
    expect_status(await svc.client.get("/v2/models/nope"), 404)
    expect_status(await svc.client.get("/v2/models/nope/ready"), 404)
    r = await svc.client.get("/v2/models/%2E%2E%2F%2E%2E/ready")
    assert r.status_code == 404 and r.json()["code"] == "not_found", (r.status_code, r.text)
    r = await svc.client.get("/v2/models/..%5C..%5Cetc")
    assert r.status_code == 404 and r.json()["code"] == "model_not_found", (r.status_code, r.text)
    assert await svc.metric("inference_requests_total", model="_unknown_", code="model_not_found") >= 3


async def test_repository_index_and_auth(svc: AppUnderTest) -> None:
    index = (await svc.client.post("/v2/repository/index")).json()
    assert index == [{"name": "ad-ctr", "version": "1", "state": "READY", "reason": ""}]
    assert (await svc.client.post("/v2/repository/index", json={"ready": True})).json() == index
    unload = "/v2/repository/models/ad-ctr/unload"
    r = await svc.client.post(unload)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized", (r.status_code, r.text)
    r = await svc.client.post(unload, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden", (r.status_code, r.text)
    r = await svc.client.post("/v2/repository/models/nope/load", headers={"Authorization": "Bearer t0ken"})
    assert r.status_code == 404, (r.status_code, r.text)
    r = await svc.client.post(unload, headers={"Authorization": "Bearer t0ken"})
    assert r.status_code == 200, (r.status_code, r.text)
    expect_status(await svc.client.get("/v2/models/ad-ctr/ready"), 503)
    expect_status(await svc.client.get("/v2/health/ready"), 503)
    index = (await svc.client.post("/v2/repository/index")).json()
    assert index == [{"name": "ad-ctr", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}]
    r = await svc.client.post("/v2/repository/models/ad-ctr/load", headers={"Authorization": "Bearer t0ken"})
    assert r.status_code == 200, (r.status_code, r.text)
    expect_status(await svc.client.get("/v2/models/ad-ctr/ready"), 200)
    assert await svc.metric("model_load_events_total", model="ad-ctr", version="1", event="unload") == 1
    assert await svc.metric("model_load_events_total", model="ad-ctr", version="1", event="load") == 2


async def test_repository_control_is_disabled_without_a_token(ctr_repo: Path) -> None:
    async with running_app(ctr_repo) as svc:
        r = await svc.client.post("/v2/repository/models/ad-ctr/unload", headers={"Authorization": "Bearer x"})
        assert r.status_code == 403 and "APP_ADMIN_TOKEN" in r.json()["error"], (r.status_code, r.text)
