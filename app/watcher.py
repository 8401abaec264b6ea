"""Finds new versions: a periodic rescan, woken early by the Redis ``model-published`` notice when configured.

The notice only says "look now": the repository on disk stays the source of truth, so a lost message costs at
most one rescan interval and a duplicate costs one cheap rescan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from app.logs import redact, redact_url
from app.registry import ModelRegistry
from app.supervisor import Supervised, supervise

LOG = logging.getLogger(__name__)


class RepositoryWatcher:
    """Runs ``registry.sync()`` every ``interval_s`` seconds or as soon as :meth:`poke` is called."""

    def __init__(
        self, registry: ModelRegistry, interval_s: float, redis_url: str | None = None, channel: str = "model-published"
    ) -> None:
        self.registry = registry
        self.interval_s = interval_s
        self.redis_url = redis_url
        self.channel = channel
        self.rescans = 0
        self.subscribed = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[Supervised] = []

    def start(self) -> None:
        """Both loops are supervised: a crash is logged and restarted, never a silently frozen repository."""
        self._tasks.append(supervise("repository-rescan", self._rescan_loop))
        if self.redis_url:
            self._tasks.append(supervise("repository-notices", self._listen))

    @property
    def alive(self) -> bool:
        return all(not t.done() for t in self._tasks)

    def poke(self) -> None:
        """Ask for a rescan now (called for every notice)."""
        self._wake.set()

    async def stop(self) -> None:
        for sup in self._tasks:
            sup.stop()
        for sup in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await sup.task
        self._tasks.clear()

    async def _rescan_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.registry.sync()
            except Exception:  # a broken repository must not stop the watcher
                LOG.exception("repository rescan failed")
            self.rescans += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()

    async def _listen(self) -> None:
        """Subscribe to the notice channel; reconnect with capped backoff when Redis goes away."""
        import redis.asyncio as aioredis

        backoff = 0.5
        url = self.redis_url or ""
        while True:
            client: Any = aioredis.from_url(url, socket_connect_timeout=2.0)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    LOG.info("listening for %r notices on %s", self.channel, redact_url(self.redis_url))
                    self.subscribed.set()
                    backoff = 0.5
                    self.poke()  # anything published while we were away
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            LOG.info("notice on %r: %r", self.channel, message.get("data"))
                            self.poke()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - Redis is optional; keep serving and retry
                self.subscribed.clear()
                LOG.warning("redis notices unavailable (%s); retrying in %.1fs", redact(repr(e)), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                await client.aclose()
