"""An automatic rollback announces itself on the Redis notice channel (real redis-server): other pods rescan at
once instead of serving the broken canary until their next interval."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from app.metrics import Metrics
from app.registry import ModelRegistry
from app.rollout.policy import read_policy, set_change, update_policy
from app.rollout.rollback import announce, check_canaries
from app.settings import Settings
from tests.fixtures.servers import RedisServer, free_port


def _repo(tmp_path: Path) -> Path:
    for v in (1, 2):
        (tmp_path / "m" / str(v)).mkdir(parents=True)
        (tmp_path / "m" / str(v) / "manifest.json").write_text("{}")
    return tmp_path


async def _next_message(pubsub: Any, timeout_s: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            return dict(message)
    return None


async def test_a_rollback_sends_the_policy_notice(tmp_path: Path, redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    repo = _repo(tmp_path)
    limits: dict[str, float | int] = {"max_error_rate": 0.01, "min_requests": 50}
    update_policy(repo, "m", set_change(stable=1, canary=2, weight=0.2, limits=limits))
    settings = Settings(model_repo=repo, redis_url=redis_server.url)
    metrics = Metrics()
    registry = ModelRegistry(settings, metrics)
    policy = read_policy(repo, "m")
    assert policy is not None
    registry.policies["m"] = policy
    for _ in range(100):
        metrics.requests.labels("ctr", "m", "2", "ok", "ok").inc()
    metrics.requests.labels("ctr", "m", "2", "error", "inference_failed").inc(10)

    client: Any = aioredis.from_url(redis_server.url)
    try:
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(settings.redis_channel)
            await check_canaries(registry)
            message = await _next_message(pubsub, 10)
    finally:
        await client.aclose()
    assert message is not None, "no notice on the channel after the rollback"
    assert json.loads(message["data"]) == {"model": "m", "version": 1}, message
    written = read_policy(repo, "m")
    assert written is not None and written.canary is not None and written.canary.weight == 0, written


async def test_an_unreachable_redis_only_warns() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    assert await asyncio.wait_for(announce(dead, "model-published", "m", 1), 30) is False
    assert await announce(None, "model-published", "m", 1) is False
