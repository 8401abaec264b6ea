"""Issue 8: Redis dies and comes back mid-run: the watcher resubscribes and a later notice is acted on; no 5xx."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.fixtures.checks import expect_status
from tests.fixtures.ctr_model import publish_ctr_version
from tests.fixtures.servers import ServerFactory, wait_until
from tests.fixtures.traffic import Traffic
from tests.reliability.conftest import RestartableRedis, ready, start


def subscribers(redis: RestartableRedis) -> int:
    out = redis.command("PUBSUB", "NUMSUB", "model-published").split()
    return int(out[-1]) if out else 0


async def test_watcher_survives_a_redis_restart(
    repo: Path, start_server: ServerFactory, restartable_redis: RestartableRedis
) -> None:
    redis = restartable_redis
    # rescans every 10 minutes: only a notice can make the new version appear within this test
    server = start(start_server, repo, REDIS_URL=redis.url, APP_RESCAN_INTERVAL_S="600")
    ready(server)
    wait_until(lambda: subscribers(redis) == 1, 20, "the watcher to subscribe")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        traffic = Traffic(client, workers=4, max_s=60)
        traffic.start()
        redis.kill()
        await asyncio.to_thread(
            wait_until,
            lambda: "redis notices unavailable" in server.log.read_text(),
            20,
            "the watcher to notice Redis is gone",
        )
        redis.start()
        await asyncio.to_thread(wait_until, lambda: subscribers(redis) == 1, 30, "the watcher to resubscribe")
        version = publish_ctr_version(repo, seed=0)
        redis.command("PUBLISH", "model-published", f"ad-ctr/{version}")
        await asyncio.to_thread(
            wait_until,
            lambda: httpx.get(server.url + "/v2/models/ad-ctr").json()["versions"] == [str(version)],
            30,
            f"version {version} to be served after the notice",
        )
        await traffic.stop()
    assert traffic.outcomes and not traffic.failures(), traffic.failures()[:5]
    expect_status(server.get("/v2/health/live"), 200)
