"""A Redis that refuses writes but answers reads: events are dropped, recommendations keep their stored histories.

Real server (``python -m app``), real ``redis-server`` made to fail writes two ways: out of memory with
``noeviction`` (writes answer an error at once) and ``CLIENT PAUSE ... WRITE`` (writes hang until the client's
socket timeout). Reads succeed throughout, so no recommendation may be degraded.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from compress.cli import main as compress_main
from tests.fixtures.compress_run import CompressRun
from tests.fixtures.rec_run import REC_CI_CONFIG
from tests.fixtures.servers import RedisServer, ServerFactory, wait_until


def _fail_writes(client: Any, how: str) -> None:
    if how == "maxmemory":
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", "1")
    else:
        client.execute_command("CLIENT", "PAUSE", "60000", "WRITE")


@pytest.mark.parametrize("how", ["maxmemory", "pause"])
def test_failing_writes_do_not_degrade_reads(
    how: str,
    rec_compress_run: CompressRun,
    rec_test_users: dict[str, list[str]],
    redis_server: RedisServer,
    start_server: ServerFactory,
) -> None:
    assert compress_main(["-q", "features", "load", str(REC_CI_CONFIG), "--redis-url", redis_server.url]) == 0
    env = {"APP_TASK_MODELS": json.dumps({"recommend": rec_compress_run.cfg.model.name}), "APP_WORKERS": "1"}
    server = start_server(rec_compress_run.repo, REDIS_URL=redis_server.url, **env)
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "the recommend version to be ready")
    users = sorted(rec_test_users)[:20]
    admin = redis.Redis.from_url(redis_server.url)
    _fail_writes(admin, how)
    try:
        events, recs = [], []
        for n in range(60):  # events and reads interleaved: every read follows a failed write
            user = users[n % len(users)]
            ev = server.post("/v1/events", json={"user_id": user, "item_id": "21977", "type": "view"})
            events.append(ev.json())
            rec = server.post("/v1/recommend", json={"user_id": user, "k": 10})
            assert rec.status_code == 200, rec.text
            recs.append(rec.json())
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.config_set("maxmemory", "0")
    dropped = [e for e in events if e["stored"] is False and e["degraded"] is True]
    assert len(dropped) == len(events), f"writes should all fail ({how}); saw {events[:3]}"
    degraded = [r for r in recs if r["degraded"]]
    assert len(degraded) == 0, f"{len(degraded)}/{len(recs)} recommendations degraded while reads worked ({how})"
    assert all(r["history_source"] == "store" for r in recs), {r["history_source"] for r in recs}


def test_seeding_with_two_workers_says_what_each_did(
    rec_compress_run: CompressRun, start_server: ServerFactory
) -> None:
    env = {"APP_TASK_MODELS": json.dumps({"recommend": rec_compress_run.cfg.model.name}), "APP_WORKERS": "2"}
    server = start_server(rec_compress_run.repo, **env)
    known = len(
        json.loads((rec_compress_run.repo / rec_compress_run.cfg.model.name / "2" / "histories.json").read_text())
    )

    def seed_lines() -> list[str]:
        return [line for line in server.log.read_text().splitlines() if "seeded" in line]

    wait_until(lambda: len(seed_lines()) >= 2, 90, "both workers to seed the shared feature store")
    lines = seed_lines()
    assert all(f"of {known} customers" in line for line in lines), lines
    written = [int(line.split("seeded from histories.json: ")[1].split(" ")[0]) for line in lines]
    assert sorted(written) == [0, known], f"one worker writes every customer, the other finds them present: {lines}"
