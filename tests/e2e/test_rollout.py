"""Rollout on a real server (two workers) with real published versions: a policy holds a new version back, a
shadow is scored and compared, a sticky canary splits traffic over HTTP and gRPC, and a broken canary (weights
shuffled) is rolled back by the service under load with no failed request."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from app.grpc.generated.shopinfer.v1 import tasks_pb2_grpc
from app.grpc.task_messages import encode_score_ads
from app.rollout.compare import PCTR_TOLERANCE
from compress.cli import main as compress_main
from tests.fixtures.asgi import until
from tests.fixtures.ctr_model import publish_ctr_version, raw_records, reference_scores
from tests.fixtures.servers import RedisServer, ServerFactory, ServerProcess

RECORDS = raw_records(8)


def _body() -> dict[str, Any]:
    cands = [
        {"ad_id": f"a{i}", "features": {k: v for k, v in r.items() if v is not None}} for i, r in enumerate(RECORDS)
    ]
    return {"candidates": cands}


def _policy(repo: Path, *args: str) -> None:
    assert compress_main(["-q", "policy", "set", "ad-ctr", "--repo", str(repo), *args]) == 0


def _client(server: ServerProcess) -> httpx.AsyncClient:
    """A client that opens a new connection per request: the kernel spreads connections (not requests) over the
    workers' ``SO_REUSEPORT`` listeners, so a kept-alive connection would only ever see one worker."""
    return httpx.AsyncClient(base_url=server.url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


def _logged_by(server: ServerProcess, since: int, message: str) -> set[str]:
    """The workers (``w0``, ``w1``) that logged a line starting with ``message`` after byte ``since`` of the log."""
    text = server.log.read_bytes()[since:].decode(errors="replace")
    return set(re.findall(rf"\[(w\d+)\] app\.registry: {re.escape(message)}(?:[ ,(]|$)", text, re.MULTILINE))


async def _switched_everywhere(server: ServerProcess, since: int, stable: int) -> None:
    """Both workers applied a policy naming ``stable`` and have that version READY (a worker keeps answering from
    the old version until the new one is ready: the switch never fails a request)."""

    def done() -> bool:
        applied = _logged_by(server, since, f"rollout policy of ad-ctr: stable {stable}")
        ready = _logged_by(server, since, f"version ad-ctr/{stable} is READY")
        return len(applied) == 2 and len(ready) == 2

    await until(done, 30, f"both workers switching to version {stable}", interval_s=0.1)


async def _versions_seen(client: httpx.AsyncClient, n: int, **headers: str) -> list[int]:
    out = []
    for _ in range(n):
        r = await client.post("/v1/ads/ctr", json=_body(), headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["x-model-version"] == str(r.json()["version"]), r.headers
        out.append(r.json()["version"])
    return out


def _summary(server: ServerProcess) -> dict[str, Any]:
    r = server.get("/v2/models/ad-ctr/rollout")
    assert r.status_code == 200, server.saw(r)
    body: dict[str, Any] = r.json()
    return body


async def test_shadow_canary_and_automatic_rollback(
    ctr_repo: Path, ctr_artifacts_seed1: Path, start_server: ServerFactory
) -> None:
    repo = ctr_repo
    _policy(repo, "--stable", "1")
    server = start_server(repo, APP_RESCAN_INTERVAL_S="0.2", APP_ROLLOUT_CHECK_INTERVAL_S="0.3")
    await until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "readiness")
    v2 = publish_ctr_version(repo, seed=1)
    async with _client(server) as client:
        # a published version takes no traffic until the policy names it
        async def listed_everywhere() -> bool:  # ten fresh connections: both workers' rescans saw version 2
            for _ in range(10):
                r = await client.post("/v2/repository/index", json={})
                if not any(e["name"] == "ad-ctr" and e["version"] == str(v2) for e in r.json()):
                    return False
            return True

        await until(listed_everywhere, 30, f"both workers listing version {v2}", interval_s=0.1)
        assert set(await _versions_seen(client, 10)) == {1}, server.saw()

        # shadow: every request copied to version 2, compared with the live answer
        _policy(repo, "--shadow", str(v2), "--shadow-rate", "1.0")

        shadowed: list[dict[str, Any]] = []

        async def scored() -> bool:
            await _versions_seen(client, 2)
            shadowed[:] = [e for e in _summary(server)["shadow"] if e["role"] == "shadow"]
            return bool(shadowed) and shadowed[0]["scored"] >= 10

        await until(scored, 60, "10 shadow comparisons scored", interval_s=0.1)
        entry = shadowed[0]
        assert (entry["version"], entry["reference"]) == (v2, 1), entry
        ref = reference_scores(repo / "ad-ctr" / "1", RECORDS)
        cand = reference_scores(repo / "ad-ctr" / str(v2), RECORDS)
        direct = float(np.mean(np.abs(ref - cand) <= PCTR_TOLERANCE))
        assert abs(entry["agreement"] - direct) < 1e-6, (entry, direct)
        assert abs(entry["measures"]["pctr_abs_diff"] - float(np.mean(np.abs(ref - cand)))) < 1e-5, entry

        # sticky canary: one customer, one version, over HTTP (both workers) and gRPC
        mark = server.log.stat().st_size
        _policy(repo, "--canary", str(v2), "--weight", "0.5", "--sticky", "header:x-user-id")
        canary_line = f"rollout policy of ad-ctr: stable 1, canary {v2} at 50% (sticky header:x-user-id)"
        await until(lambda: len(_logged_by(server, mark, canary_line)) == 2, 30, "both workers routing to the canary")
        by_user: dict[str, int] = {}
        channel = grpc.insecure_channel(server.grpc_target)
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        try:
            for u in range(40):
                user = f"customer-{u}"
                seen = set(await _versions_seen(client, 3, **{"x-user-id": user}))
                resp, call = stub.ScoreAds.with_call(
                    encode_score_ads(_body()), metadata=(("x-user-id", user),), timeout=30
                )
                trailers = dict(call.trailing_metadata() or ())
                seen |= {resp.version, int(trailers["x-model-version"])}
                assert len(seen) == 1, f"{user} saw versions {seen}"
                by_user[user] = seen.pop()
        finally:
            channel.close()
        share = sum(v == v2 for v in by_user.values()) / len(by_user)
        assert 0.2 <= share <= 0.8, f"canary share {share} of 40 customers at weight 0.5"

        # a broken canary (weights shuffled) is rolled back under load, with no failed request
        v3 = publish_ctr_version(repo, seed=0, shuffle_weights=True)
        _policy(repo, "--canary", str(v3), "--weight", "0.2", "--min-agreement", "0.9", "--min-requests", "50")
        statuses: list[int] = []
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                r = await client.post("/v1/ads/ctr", json=_body())
                statuses.append(r.status_code)

        # The summary comes from whichever worker answers, and only the judging worker holds the rolled-back
        # policy at once (its siblings reload it a moment later): keep the snapshot that showed the rollback
        # rather than reading again (a second read could land on a sibling that has no rollback event yet).
        events: list[dict[str, Any]] = []

        def rolled_back() -> bool:
            summary = _summary(server)
            events[:] = [e for e in summary["events"] if e["kind"] == "rollback"]
            if events:
                assert summary["policy"]["canary"]["weight"] == 0, summary["policy"]
            return bool(events)

        workers = [asyncio.create_task(load()) for _ in range(4)]
        try:
            await until(rolled_back, 90, "the broken canary rolled back", interval_s=0.2)
        finally:
            stop.set()
            await asyncio.gather(*workers)
        assert events[0]["version"] == v3 and "agreement" in events[0]["reason"], events
        assert statuses and set(statuses) == {200}, f"{len(statuses)} requests, statuses {set(statuses)}"

        async def stable_only() -> bool:
            return set(await _versions_seen(client, 10)) == {1}

        await until(stable_only, 30, "both workers answering from the stable version", interval_s=0.1)
        metrics = server.get("/metrics").text
        assert 'rollout_rollbacks_total{limit="min_agreement",model="ad-ctr",version="3"}' in metrics, metrics[-2000:]


async def test_a_policy_change_is_announced_on_redis(
    ctr_repo: Path, ctr_artifacts_seed1: Path, start_server: ServerFactory, redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The periodic rescan is a minute: only the Redis notice the command sends can make the workers switch."""
    repo = ctr_repo
    v2 = publish_ctr_version(repo, seed=1)
    _policy(repo, "--stable", "1")
    server = start_server(repo, APP_RESCAN_INTERVAL_S="60", REDIS_URL=redis_server.url)
    await until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "readiness")
    subscribed = "listening for 'model-published' notices"
    await until(lambda: server.log.read_text().count(subscribed) >= 2, 30, "both workers subscribed")
    async with _client(server) as client:
        assert set(await _versions_seen(client, 6)) == {1}, server.saw()
        monkeypatch.setenv("REDIS_URL", redis_server.url)
        _policy(repo, "--stable", str(v2))

        async def switched() -> bool:
            return set(await _versions_seen(client, 6)) == {v2}

        await until(switched, 30, "both workers serving the new stable version", interval_s=0.1)


TOKEN = "rollout-t0ken"


async def test_admin_endpoint_and_a_policy_on_disk_reach_both_workers(
    ctr_repo: Path, ctr_artifacts_seed1: Path, start_server: ServerFactory
) -> None:
    """``POST /v2/models/{m}/rollout`` needs the admin token, refuses an unpublished version with ``bad_policy``
    and reroutes every worker; a policy written to disk by hand (no admin call, no Redis) is picked up by both
    workers' rescans."""
    repo = ctr_repo
    v2 = publish_ctr_version(repo, seed=1)
    server = start_server(repo, APP_RESCAN_INTERVAL_S="0.2", APP_ADMIN_TOKEN=TOKEN, APP_GRPC_ENABLED="false")
    await until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "readiness")
    route, auth = "/v2/models/ad-ctr/rollout", {"authorization": f"Bearer {TOKEN}"}
    async with _client(server) as client:
        assert set(await _versions_seen(client, 6)) == {v2}, "no policy: the newest version answers"
        for headers, status, code in (({}, 401, "unauthorized"), ({"authorization": "Bearer nope"}, 403, "forbidden")):
            r = await client.post(route, json={"action": "set", "stable": 1}, headers=headers)
            assert (r.status_code, r.json().get("code")) == (status, code), r.text
        r = await client.post(route, json={"action": "set", "stable": 1, "canary": 9, "weight": 0.5}, headers=auth)
        assert (r.status_code, r.json().get("code")) == (422, "bad_policy"), r.text
        assert "unknown_version" in r.json()["error"], r.text
        r = await client.post(route, json={"action": "set", "stable": 1, "colour": "red"}, headers=auth)
        assert (r.status_code, r.json().get("code")) == (422, "bad_policy"), r.text
        assert not (repo / "ad-ctr" / "policy.json").exists(), "a refused change must not write a policy"

        mark = server.log.stat().st_size
        r = await client.post(route, json={"action": "set", "stable": 1}, headers=auth)
        assert r.status_code == 200 and r.json()["policy"]["stable"] == 1, r.text
        await _switched_everywhere(server, mark, 1)
        assert set(await _versions_seen(client, 20)) == {1}, server.saw()

        # by hand on disk (an atomic rename, as a config-management tool would): only the rescans can see it
        mark = server.log.stat().st_size
        doc = json.loads((repo / "ad-ctr" / "policy.json").read_text())
        tmp = repo / "ad-ctr" / ".policy.json.new"
        tmp.write_text(json.dumps({**doc, "stable": v2}))
        tmp.rename(repo / "ad-ctr" / "policy.json")
        await _switched_everywhere(server, mark, v2)
        assert set(await _versions_seen(client, 20)) == {v2}, server.saw()
