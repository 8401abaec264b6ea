"""Defects 6, 7, 9: out-of-range ids, odd numerals, 405 without Allow, host paths in the index, re-hashing.

One real server; every bad input must be a 4xx with a machine-readable code, never a 500 or a wrong answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.tasks.ctr.features import CtrFeaturizer
from tests.fixtures.checks import expect_status
from tests.fixtures.ctr_model import publish_ctr_version, raw_records
from tests.fixtures.servers import ServerFactory, wait_until
from tests.reliability.conftest import metric, ready, start


def v2_body(sparse: list[list[int]], dense: list[list[float]] | None = None) -> dict[str, Any]:
    n = len(sparse)
    dense = dense or [[0.0] * 13] * n
    return {"inputs": [{"name": "dense", "datatype": "FP32", "shape": [n, 13], "data": dense},
                       {"name": "sparse", "datatype": "INT64", "shape": [n, 26], "data": sparse}]}  # fmt: skip


def test_out_of_range_ids_are_400_before_batching(repo: Path, start_server: ServerFactory) -> None:
    server = start(start_server, repo)
    ready(server)
    x = CtrFeaturizer.load(repo / "ad-ctr" / "1" / "preprocess.json").transform_records(raw_records(3))
    good = x["sparse"].tolist()
    expect_status(server.post("/v2/models/ad-ctr/infer", json=v2_body(good, x["dense"].tolist())), 200)
    cardinalities = CtrFeaturizer.load(repo / "ad-ctr" / "1" / "preprocess.json").cardinalities
    for bad_value, column in ((10**9, 0), (-1, 5), (cardinalities[7], 7)):
        rows = [list(r) for r in good]
        rows[1][column] = bad_value
        r = server.post("/v2/models/ad-ctr/infer", json=v2_body(rows))
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "index_out_of_range" and f"[1, {column}]" in r.json()["error"]
    r = server.post("/v2/models/ad-ctr/infer", json=v2_body([[10**9] * 26] * 4))
    assert r.status_code == 400 and r.json()["code"] == "index_out_of_range", (r.status_code, r.text)
    assert metric(server, "inference_requests_total", code="inference_failed") == 0
    log = server.log.read_text()
    assert " ERROR " not in log, log[-2000:]
    assert log.count("id out of range") == 1  # rate-limited: one line for the whole burst


def test_odd_numerals_are_400_everywhere(repo: Path, start_server: ServerFactory) -> None:
    server = start(start_server, repo)
    ready(server)
    body = {"candidates": [{"ad_id": "a", "features": raw_records(1)[0]}]}
    for value in ("²", "٢", "1" * 5000, "-5", "+5", "0", "1e3", "5_0"):
        r = server.post("/v1/ads/ctr", json=body, headers={"timeout-ms": value.encode()})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_header", (value, r.text)
    expect_status(server.post("/v1/ads/ctr", json=body, headers={"timeout-ms": "5000"}), 200)
    for version in ("%C2%B2", "%D9%A2", "1" * 5000, "0", "-1"):
        for path in (f"/v2/models/ad-ctr/versions/{version}", f"/v2/models/ad-ctr/versions/{version}/ready"):
            r = server.get(path)
            assert r.status_code == 400 and r.json()["code"] == "invalid_version", (path, r.text)
        r = server.post(f"/v2/models/ad-ctr/versions/{version}/infer", json=v2_body([[2] * 26]))
        assert r.status_code == 400 and r.json()["code"] == "invalid_version", (version, r.text)
    expect_status(server.get("/v2/models/ad-ctr/versions/1"), 200)
    r = server.post(
        "/v2/models/ad-ctr/infer",
        content=json.dumps(v2_body([[2] * 26])),
        headers={"inference-header-content-length": "²".encode()},
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_header", (r.status_code, r.text)
    assert metric(server, "inference_requests_total", code="internal") == 0


def test_405_has_allow(repo: Path, start_server: ServerFactory) -> None:
    server = start(start_server, repo)
    for method, path, allowed in (
        ("GET", "/v1/ads/ctr", "POST"),
        ("DELETE", "/v2/health/live", "GET"),
        ("PUT", "/v2/models/ad-ctr/infer", "POST"),
    ):
        r = httpx.request(method, server.url + path, timeout=10)
        assert r.status_code == 405, (method, path, r.text)
        assert allowed in r.headers["allow"], r.headers


def test_index_hides_host_paths_and_failed_versions_are_not_rehashed(repo: Path, start_server: ServerFactory) -> None:
    publish_ctr_version(repo, seed=0, corrupt=True)  # version 2 fails sha256
    odd = repo / "ad-ctr" / "²"  # not a version: must neither crash the rescan nor be served as 2
    odd.mkdir()
    (odd / "manifest.json").write_text("{}")
    server = start(start_server, repo, APP_ADMIN_TOKEN="t", APP_RESCAN_INTERVAL_S="0.1")
    ready(server)
    index = server.post("/v2/repository/index").json()
    assert [(e["version"], e["state"]) for e in index] == [("1", "READY"), ("2", "UNAVAILABLE")]
    text = json.dumps(index)
    assert "checksum" in text and "model.onnx" in text  # the reason is kept ...
    assert str(repo) not in text and str(repo.resolve()) not in text and "/tmp" not in text  # ... the host path is not
    r = server.post("/v2/repository/models/ad-ctr/load", headers={"authorization": "Bearer t"})
    assert r.status_code == 200, r.text
    failures = metric(server, "model_load_failures_total", model="ad-ctr", version="2")
    assert failures == 2  # startup + the explicit load: an explicit load retries failed versions
    for _ in range(2):  # each new version becoming ready proves a full rescan ran after the admin load
        version = publish_ctr_version(repo, seed=0, model="other")
        wanted = f'"name":"other","version":"{version}","state":"READY"'
        wait_until(lambda: wanted in server.post("/v2/repository/index").text, 60, f"other/{version}")  # noqa: B023
    assert metric(server, "model_load_failures_total", model="ad-ctr", version="2") == failures
    assert server.get("/v2/models/ad-ctr").json()["versions"] == ["1"]
    assert np.isfinite(server.post("/v1/ads/ctr", json={"candidates": [{"ad_id": "a"}]}).json()["scores"][0]["pctr"])
