"""The real server (``python -m app`` under uvicorn): task endpoint correctness, tritonclient, readiness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.tasks.ctr.features import CtrFeaturizer
from tests.fixtures.ctr_model import publish_ctr_version, raw_records, reference_scores
from tests.fixtures.servers import ServerFactory, wait_until


def test_ctr_scores_match_onnxruntime_on_the_published_files(ctr_repo: Path, start_server: ServerFactory) -> None:
    server = start_server(ctr_repo)
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "readiness")
    for n, offset in ((1, 8000), (100, 8100), (1000, 9000)):
        records = raw_records(n, offset)
        body = {"candidates": [{"ad_id": f"ad{i}", "features": r} for i, r in enumerate(records)]}
        r = server.post("/v1/ads/ctr", json=body)
        assert r.status_code == 200, r.text
        assert [s["ad_id"] for s in r.json()["scores"]] == [f"ad{i}" for i in range(n)]
        expected = reference_scores(ctr_repo / "ad-ctr" / "1", records)
        np.testing.assert_allclose([s["pctr"] for s in r.json()["scores"]], expected, atol=1e-5, rtol=0)


def test_tritonclient_http(ctr_repo: Path, start_server: ServerFactory) -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    server = start_server(ctr_repo)
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    wait_until(client.is_server_ready, 60, "readiness via tritonclient")
    assert client.is_server_live() and client.is_model_ready("ad-ctr")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("ad-ctr")
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("dense", "FP32", [-1, 13]),
        ("sparse", "INT64", [-1, 26]),
    ]

    records = raw_records(5)
    x = CtrFeaturizer.load(ctr_repo / "ad-ctr" / "1" / "preprocess.json").transform_records(records)
    expected = reference_scores(ctr_repo / "ad-ctr" / "1", records)
    for binary in (True, False):
        dense = httpclient.InferInput("dense", list(x["dense"].shape), "FP32")
        dense.set_data_from_numpy(x["dense"], binary_data=binary)
        sparse = httpclient.InferInput("sparse", list(x["sparse"].shape), "INT64")
        sparse.set_data_from_numpy(x["sparse"], binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("pctr", binary_data=binary)]
        result = client.infer("ad-ctr", [dense, sparse], outputs=outputs, request_id=f"r-{binary}")
        np.testing.assert_allclose(result.as_numpy("pctr").reshape(-1), expected, atol=1e-6)
        assert result.get_response()["id"] == f"r-{binary}"
    result = client.infer("ad-ctr", [dense, sparse], model_version="1")  # no outputs: all, binary by default
    np.testing.assert_allclose(result.as_numpy("pctr").reshape(-1), expected, atol=1e-6)

    with pytest.raises(InferenceServerException, match="not in the repository"):
        client.infer("nope", [dense, sparse])
    bad = httpclient.InferInput("dense", [5, 12], "FP32")
    bad.set_data_from_numpy(x["dense"][:, :12].copy())
    with pytest.raises(InferenceServerException, match="shape"):
        client.infer("ad-ctr", [bad, sparse])
    client.close()


def test_not_ready_until_the_required_model_is_published_and_warm(tmp_path: Path, start_server: ServerFactory) -> None:
    repo = tmp_path / "empty_repo"
    repo.mkdir()
    server = start_server(repo, APP_REQUIRED_MODELS="ad-ctr", APP_RESCAN_INTERVAL_S="0.2")
    r = server.get("/v2/health/ready")
    assert r.status_code == 503 and r.json() == {"ready": False, "waiting_for": ["ad-ctr"]}, (r.status_code, r.text)
    r = server.post("/v1/ads/ctr", json={"candidates": [{"ad_id": "a"}]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", (r.status_code, r.text)
    publish_ctr_version(repo, seed=0)
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "readiness after publishing")
    assert server.post("/v1/ads/ctr", json={"candidates": [{"ad_id": "a"}]}).json()["version"] == 1
    log = server.log.read_text()
    assert log.index("is READY") > log.index("readiness waits for ['ad-ctr']")


def test_first_hour_errors_name_the_fix(ctr_repo: Path, start_server: ServerFactory) -> None:
    """The three messages a newcomer meets first say what is valid and which setting sets a limit."""
    server = start_server(ctr_repo, APP_MAX_BODY_BYTES="4096")
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "readiness")
    r = server.post("/v1/ads/ctr", json={"candidates": [{"ad_id": "a", "features": {"i5": 1}}]})
    msg = r.json()["error"]["message"]
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_feature", (r.status_code, r.text)
    assert "did you mean 'I5'?" in msg and "I1" in msg and "C26" in msg, f"unknown-feature message: {msg}"

    r = server.get("/v2/models/ad-ctrr")
    assert r.status_code == 404 and r.json()["code"] == "model_not_found", (r.status_code, r.text)
    assert "models served: ad-ctr" in r.json()["error"] and "did you mean 'ad-ctr'?" in r.json()["error"], r.text

    r = server.post("/v1/ads/ctr", content=b'{"candidates": [' + b" " * 5000 + b"]}")
    msg = r.json()["error"]["message"]
    assert r.status_code == 413 and "APP_MAX_BODY_BYTES" in msg, (r.status_code, r.text)
