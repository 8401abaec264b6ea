"""``/v1/recommend`` and ``/v1/events`` on a real server (``python -m app``), with both feature-store backends."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from compress.cli import main as compress_main
from tests.fixtures.compress_run import CompressRun
from tests.fixtures.rec_run import REC_CI_CONFIG
from tests.fixtures.servers import RedisServer, ServerFactory, ServerProcess, wait_until


def _env(run: CompressRun, **extra: str) -> dict[str, str]:
    return {"APP_TASK_MODELS": json.dumps({"recommend": run.cfg.model.name}), "APP_WORKERS": "1", **extra}


def _start(start_server: ServerFactory, run: CompressRun, **extra: str) -> ServerProcess:
    """A server whose recommendation model is READY (liveness alone comes before the version loads)."""
    server = start_server(run.repo, **_env(run, **extra))
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "the recommend version to be ready")
    return server


def _recommend(server: ServerProcess, body: dict[str, Any]) -> dict[str, Any]:
    r = server.post("/v1/recommend", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _ids(resp: dict[str, Any]) -> list[str]:
    return [it["item_id"] for it in resp["items"]]


def test_served_recommendations_hit_next_purchases_at_the_reported_recall(
    rec_compress_run: CompressRun,
    rec_test_users: dict[str, list[str]],
    start_server: ServerFactory,
) -> None:
    server = _start(start_server, rec_compress_run)
    users = sorted(rec_test_users)
    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(4) as pool:

        def ask(user: str) -> httpx.Response:
            for _ in range(50):  # 503 = load shedding on a busy CI box (the service's contract): ask again
                r = client.post("/v1/recommend", json={"user_id": user, "k": 10})
                if r.status_code != 503:
                    break
            return r

        answers = list(pool.map(ask, users))
    assert {a.status_code for a in answers} == {200}, [(a.status_code, a.text[:300]) for a in answers]
    recall = []
    for u, a in zip(users, answers, strict=True):
        body = a.json()
        assert body["history_source"] == "store" and not body["degraded"]
        t = set(rec_test_users[u])
        recall.append(len(t & set(_ids(body))) / min(10, len(t)))
    man = json.loads((rec_compress_run.repo / rec_compress_run.cfg.model.name / "2" / "manifest.json").read_text())
    assert abs(float(np.mean(recall)) - man["metrics"]["candidate"]["recall@10"]) < 1e-6
    assert answers[0].json()["items"][0]["title"]


def test_events_change_the_next_recommendation_in_process(
    rec_compress_run: CompressRun,
    start_server: ServerFactory,
) -> None:
    server = _start(start_server, rec_compress_run)
    cold = _recommend(server, {"user_id": "visitor-1", "k": 10})
    assert cold["history_source"] == "none"
    bought = _ids(_recommend(server, {"history": ["85123A"], "k": 3}))
    for item in ["22423", "85099B", "47566"]:
        r = server.post("/v1/events", json={"user_id": "visitor-1", "item_id": item, "type": "purchase"})
        assert r.status_code == 200 and r.json() == {"stored": True, "degraded": False, "backend": "memory"}, (
            r.status_code,
            r.text,
        )
    warm = _recommend(server, {"user_id": "visitor-1", "k": 10})
    assert warm["history_source"] == "store" and warm["history_used"] == 3
    assert _ids(warm) != _ids(cold)
    no_repeat = _recommend(server, {"user_id": "visitor-1", "k": 10, "exclude_purchased": True})
    assert not {"22423", "85099B", "47566"} & set(_ids(no_repeat))
    assert bought  # an anonymous session's own history works too
    bad = server.post("/v1/recommend", json={"history": ["85123A", "NOPE"], "k": 500})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request", (bad.status_code, bad.text)
    assert server.post("/v1/recommend", json={"k": 5}).json()["error"]["code"] == "missing_history"
    skipped = _recommend(server, {"history": ["85123A", "NOPE"], "k": 5})
    assert skipped["unknown_items"] == ["NOPE"] and skipped["history_used"] == 1


def test_redis_backend_loader_events_and_degraded_mode(
    rec_compress_run: CompressRun,
    rec_test_users: dict[str, list[str]],
    redis_server: RedisServer,
    start_server: ServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the CLI entry point in process: the session's split is already cleaned (compress.recommend.task.load_split)
    assert compress_main(["-q", "features", "load", str(REC_CI_CONFIG), "--redis-url", redis_server.url]) == 0
    published = json.loads(
        (rec_compress_run.repo / rec_compress_run.cfg.model.name / "2" / "histories.json").read_text()
    )
    assert f"loaded the recent histories of {len(published)} customers" in capsys.readouterr().out
    server = _start(start_server, rec_compress_run, REDIS_URL=redis_server.url)
    user = sorted(rec_test_users)[0]
    before = _recommend(server, {"user_id": user, "k": 10})
    assert before["history_source"] == "store" and not before["degraded"]
    for item in ["21977", "84991", "21212", "84992"]:
        r = server.post("/v1/events", json={"user_id": user, "item_id": item, "type": "view"})
        assert r.json() == {"stored": True, "degraded": False, "backend": "redis"}
    after = _recommend(server, {"user_id": user, "k": 10})
    assert _ids(after) != _ids(before)

    redis_server.kill()
    statuses: list[int] = []
    own = server.post("/v1/recommend", json={"user_id": user, "history": ["85123A"], "k": 5})
    statuses.append(own.status_code)
    assert own.json()["history_source"] == "request" and own.json()["degraded"] is False  # no store read needed
    for body in (
        {"user_id": user, "k": 10},
        {"user_id": user, "history": ["85123A"], "k": 5, "exclude_purchased": True},
        {"user_id": "someone", "k": 3, "exclude_purchased": True},
    ):
        r = server.post("/v1/recommend", json=body)
        statuses.append(r.status_code)
        assert r.status_code == 200 and r.json()["degraded"] is True and r.json()["items"], r.text
    ev = server.post("/v1/events", json={"user_id": user, "item_id": "21977", "type": "cart"})
    statuses.append(ev.status_code)
    assert ev.json()["stored"] is False
    assert all(s < 500 for s in statuses), statuses
    metrics = server.get("/metrics").text
    assert 'rec_feature_store_degraded_total{reason="unavailable"}' in metrics
