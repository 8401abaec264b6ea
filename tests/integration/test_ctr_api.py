"""``POST /v1/ads/ctr`` in-process: correctness against ONNX Runtime, merging, and coded 4xx errors."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.errors import ServiceError
from tests.fixtures.asgi import AppUnderTest, running_app
from tests.fixtures.checks import expect_status
from tests.fixtures.ctr_model import raw_records, reference_scores

CTR = "/v1/ads/ctr"


def request_for(records: list[dict[str, Any]], context: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "context": context or {},
        "candidates": [{"ad_id": f"ad-{i}", "features": r} for i, r in enumerate(records)],
    }


@pytest.fixture
async def svc(ctr_repo: Path) -> Any:
    async with running_app(ctr_repo) as under_test:
        yield under_test


async def test_scores_match_onnxruntime_and_keep_candidate_order(svc: AppUnderTest, ctr_repo: Path) -> None:
    records = raw_records(50)
    r = await svc.client.post(CTR, json=request_for(records))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "ad-ctr" and body["version"] == 1
    assert [s["ad_id"] for s in body["scores"]] == [f"ad-{i}" for i in range(50)]
    expected = reference_scores(ctr_repo / "ad-ctr" / "1", records)
    np.testing.assert_allclose([s["pctr"] for s in body["scores"]], expected, atol=1e-5, rtol=0)


async def test_context_is_merged_and_candidate_fields_win(svc: AppUnderTest, ctr_repo: Path) -> None:
    base = raw_records(1)[0]
    context = {k: v for k, v in base.items() if k != "C3"}
    candidates = [{"C3": base.get("C3")}, {"C3": "ffffffff", "I1": 77}, {}]
    body = {"context": context, "candidates": [{"ad_id": str(i), "features": f} for i, f in enumerate(candidates)]}
    r = await svc.client.post(CTR, json=body)
    assert r.status_code == 200, r.text
    rows = [{**context, **f} for f in candidates]
    expected = reference_scores(ctr_repo / "ad-ctr" / "1", rows)
    np.testing.assert_allclose([s["pctr"] for s in r.json()["scores"]], expected, atol=1e-5, rtol=0)


async def test_pinned_version(svc: AppUnderTest) -> None:
    r = await svc.client.post(CTR, json={**request_for(raw_records(1)), "model_version": 1})
    assert r.status_code == 200 and r.json()["version"] == 1, (r.status_code, r.text)
    r = await svc.client.post(CTR, json={**request_for(raw_records(1)), "model_version": 9})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", (r.status_code, r.text)


BAD_CASES = [
    (request_for([{"I1": 3, "C99": "x"}]), 422, "unknown_feature"),
    (request_for([{"i1": 3}]), 422, "unknown_feature"),
    (request_for([{}], context={"Cx": 1}), 422, "unknown_feature"),
    (request_for([{"I1": "abc"}]), 422, "invalid_feature"),
    (request_for([{"I1": True}]), 422, "invalid_feature"),
    (request_for([{"C1": ["a"]}]), 422, "invalid_feature"),
    (request_for([{"I2": {"x": 1}}]), 422, "invalid_feature"),
    ({"candidates": []}, 422, "invalid_request"),
    ({"context": {}}, 422, "invalid_request"),
    ({"candidates": [{"features": {}}]}, 422, "invalid_request"),
    ({"candidates": [{"ad_id": "a"}], "extra": 1}, 422, "invalid_request"),
    ({"candidates": [{"ad_id": "a"}], "model_version": 0}, 422, "invalid_request"),
    ({"candidates": [{"ad_id": str(i)} for i in range(1001)]}, 413, "too_many_candidates"),
]


def columns_for(ad_ids: list[str], columns: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"ad_ids": ad_ids, "columns": columns, **extra}


COLUMN_BAD_CASES = [
    (columns_for(["a"], {"C99": ["x"]}), 422, "unknown_feature", "columns: unknown features ['C99']"),
    (columns_for(["a"], {}, context={"Cx": 1}), 422, "unknown_feature", "context: unknown features ['Cx']"),
    (columns_for(["a", "b"], {"I1": [1]}), 422, "invalid_request", "columns.I1: 1 values for 2 ad_ids"),
    (columns_for(["a", "b"], {"I1": [1, "abc"]}), 422, "invalid_feature", "columns.I1[1]: dense feature 'I1'"),
    (columns_for(["a", "b"], {"I1": [True, 1]}), 422, "invalid_feature", "columns.I1[0]: True is not a scalar"),
    (columns_for(["a", "b"], {"I1": [1, [2]]}), 422, "invalid_feature", "columns.I1[1]: [2] is not a scalar"),
    (columns_for(["a", "b"], {"C1": ["x", ["a"]]}), 422, "invalid_feature", "columns.C1[1]: ['a'] is not a scalar"),
    (columns_for(["a", "b"], {"C1": [1, False]}), 422, "invalid_feature", "columns.C1[1]: False is not a scalar"),
    (columns_for(["a"], {"I2": [{"x": 1}]}), 422, "invalid_feature", "columns.I2[0]: {'x': 1} is not a scalar"),
    (columns_for(["a"], {"I1": 5}), 422, "invalid_request", "columns.I1: Input should be a valid list"),
    (columns_for([], {}), 422, "invalid_request", "'ad_ids' must not be empty"),
    (columns_for([""], {}), 422, "invalid_request", "ad_ids.0: String should have at least 1 character"),
    (columns_for(["a"], {}, candidates=[]), 422, "invalid_request", "candidates: Extra inputs are not permitted"),
    (columns_for(["a"], {}, model_version=0), 422, "invalid_request", "model_version: Input should be greater"),
    ({"columns": {}}, 422, "invalid_request", "ad_ids: Field required"),
    (columns_for([str(i) for i in range(1001)], {}), 413, "too_many_candidates", "1001 candidates; at most 1000"),
]


@pytest.mark.parametrize(("payload", "status", "code", "message"), COLUMN_BAD_CASES)
async def test_bad_columnar_requests_are_coded_4xx_naming_the_column(
    svc: AppUnderTest, payload: dict[str, Any], status: int, code: str, message: str
) -> None:
    r = await svc.client.post(CTR, json=payload)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["message"].startswith(message), error


async def test_columnar_body_with_odd_values_scores_like_its_rows(svc: AppUnderTest) -> None:
    """Numeric strings, padded and numeric categories, explicit nulls over the context: each column takes the row
    path's answer; a columnar body that is not JSON is 400 ``invalid_json`` like a row body."""
    from app.tasks.ctr.columns import to_columns

    records = raw_records(6, 8200)
    records[0] = {**records[0], "I1": "12", "C1": 5.0, "C2": "  padded  ", "I2": None, "C3": None}
    records[1] = {**records[1], "C4": 17, "I3": 2.5}
    rows = {"context": {"I2": 4, "C3": "ffffffff", "C9": "a"}, "candidates": request_for(records)["candidates"]}
    by_rows = await svc.client.post(CTR, json=rows)
    by_columns = await svc.client.post(CTR, json=to_columns(rows))
    assert by_rows.status_code == by_columns.status_code == 200, (by_rows.text, by_columns.text)
    assert by_columns.json()["scores"] == by_rows.json()["scores"], (by_columns.json(), by_rows.json())
    r = await svc.client.post(CTR, content=b'{"columns": {', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", (r.status_code, r.text)


@pytest.mark.parametrize(("payload", "status", "code"), BAD_CASES)
async def test_bad_requests_are_coded_4xx(svc: AppUnderTest, payload: dict[str, Any], status: int, code: str) -> None:
    r = await svc.client.post(CTR, json=payload)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


async def test_malformed_json_and_headers(svc: AppUnderTest) -> None:
    r = await svc.client.post(CTR, content=b'{"candidates": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", (r.status_code, r.text)
    ok = request_for(raw_records(1))
    r = await svc.client.post(CTR, json=ok, headers={"timeout-ms": "soon"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_header", (r.status_code, r.text)
    r = await svc.client.post(CTR, json=ok, headers={"priority": "urgent"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_header", (r.status_code, r.text)
    r = await svc.client.get(CTR)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed", (r.status_code, r.text)


async def test_body_limit_by_header_and_by_actual_size(ctr_repo: Path) -> None:
    async with running_app(ctr_repo, max_body_bytes=4096) as svc:
        big = b'{"candidates": [' + b" " * 5000 + b"]}"
        r = await svc.client.post(CTR, content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", (r.status_code, r.text)

        async def stream() -> Any:  # no Content-Length: the actual size is what counts
            for _ in range(10):
                yield b" " * 1000

        r = await svc.client.post(CTR, content=stream(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", (r.status_code, r.text)


async def test_bad_requests_do_not_disturb_a_good_one(svc: AppUnderTest) -> None:
    good = svc.client.post(CTR, json=request_for(raw_records(20)))
    bad = [svc.client.post(CTR, json=payload) for payload, _, _ in BAD_CASES]
    results = await asyncio.gather(good, *bad)
    expect_status(results[0], 200)
    assert len(results[0].json()["scores"]) == 20, results[0].text
    assert [r.status_code for r in results[1:]] == [status for _, status, _ in BAD_CASES], [
        (r.status_code, r.text[:300]) for r in results[1:]
    ]


async def test_request_id_is_echoed_or_generated(svc: AppUnderTest) -> None:
    r = await svc.client.post(CTR, json=request_for(raw_records(1)), headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await svc.client.get("/v2/health/live")
    assert len(r.headers["x-request-id"]) == 32


async def test_unexpected_errors_are_a_logged_generic_500(
    svc: AppUnderTest, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(svc.app.state.service, "run_task", boom)
    with caplog.at_level(logging.ERROR):
        r = await svc.client.post(CTR, json=request_for(raw_records(1)), headers={"x-request-id": "req-42"})
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal", (r.status_code, r.text)
    assert "secret" not in r.text and "req-42" in r.text
    assert any("req-42" in rec.getMessage() for rec in caplog.records), caplog.text[-2000:]
    assert await svc.metric("inference_requests_total", endpoint="ctr", code="internal") == 1


def test_service_error_is_not_http_aware() -> None:
    assert not hasattr(ServiceError("x"), "status_code")


async def test_graph_and_python_featurization_give_the_same_scores(ctr_repo: Path) -> None:
    """``model_raw.onnx`` (featurization inside the graph, the default) and the reference Python featurizer +
    ``model.onnx`` answer the same request identically; odd values take the same path to the same answer, and
    the columnar body gets the row body's scores in both modes."""
    from app.tasks.ctr.columns import to_columns

    records = raw_records(300, 9000)
    records[0] = {**records[0], "I1": "12", "C1": 5.0, "C2": "  padded  ", "I2": None}
    body = {"candidates": [{"ad_id": str(i), "features": r} for i, r in enumerate(records)]}
    scores = {}
    for mode in ("graph", "python"):
        async with running_app(ctr_repo, ctr_featurize=mode) as svc:
            task = svc.app.state.service.registry.resolve("ad-ctr").task
            assert task.mode == mode
            r = await svc.client.post("/v1/ads/ctr", json=body)
            assert r.status_code == 200, r.text
            scores[mode] = np.array([s["pctr"] for s in r.json()["scores"]])
            cols = await svc.client.post("/v1/ads/ctr", json=to_columns(body))
            assert cols.status_code == 200, cols.text
            assert cols.json()["scores"] == r.json()["scores"], f"{mode}: columnar and row bodies disagree"
            bad = await svc.client.post("/v1/ads/ctr", json={"candidates": [{"ad_id": "x", "features": {"I1": "abc"}}]})
            assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_feature", (
                bad.status_code,
                bad.text,
            )
    np.testing.assert_allclose(scores["graph"], scores["python"], atol=1e-6, rtol=0)
