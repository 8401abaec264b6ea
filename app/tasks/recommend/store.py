"""Per-user recent-history lists: append on ``/v1/events``, read once per batch on ``/v1/recommend``.

Entries are ``"<type>|<item_id>"`` strings, newest first, capped at ``cap`` per user, expiring ``ttl_s`` after
the user's last event. Three backends with one interface:

* :class:`InProcessStore` — bounded (LRU over users), the embedded default in a single process;
* :class:`SharedFileStore` — SQLite in the pod's private folder, the embedded default with several worker
  processes (an event posted to any worker is seen by all);
* :class:`RedisStore` — a sync client with short socket timeouts; one pipelined round trip per batch read.
  After a failure it stays "open" (answers :class:`StoreUnavailable` at once) for ``retry_s`` and then tries
  again, so a dead Redis costs one fast failure per batch at most, and reconnection is automatic.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

EVENT_TYPES = ("view", "cart", "purchase")
KEY_PREFIX = "rec:hist:"


class StoreUnavailable(Exception):
    """The backend did not answer (down, timing out); callers degrade instead of failing."""


@dataclass(frozen=True)
class Event:
    item_id: str
    type: str

    def encode(self) -> str:
        return f"{self.type}|{self.item_id}"

    @staticmethod
    def decode(raw: str | bytes) -> Event:
        text = raw.decode() if isinstance(raw, bytes) else raw
        kind, _, item = text.partition("|")
        return Event(item, kind)


class FeatureStore(Protocol):
    backend: str

    def append(self, user_id: str, events: list[Event]) -> None: ...

    def histories(self, user_ids: list[str]) -> list[list[Event]]: ...

    def load(self, histories: dict[str, list[Event]], only_missing: bool = False) -> int: ...

    def close(self) -> None: ...


class InProcessStore:
    """Dict of bounded deques, LRU-evicted beyond ``max_users``; thread-safe (batches read in a worker thread)."""

    backend = "memory"

    def __init__(self, cap: int = 100, ttl_s: float = 90 * 86400, max_users: int = 200_000) -> None:
        self.cap, self.ttl_s, self.max_users = cap, ttl_s, max_users
        self._data: OrderedDict[str, tuple[float, list[Event]]] = OrderedDict()
        self._lock = threading.Lock()

    def append(self, user_id: str, events: list[Event]) -> None:
        with self._lock:
            _, old = self._live(user_id)
            self._put(user_id, (list(reversed(events)) + old)[: self.cap])

    def _live(self, user_id: str) -> tuple[float, list[Event]]:
        got = self._data.get(user_id)
        if got is None or time.monotonic() - got[0] > self.ttl_s:
            return 0.0, []
        return got

    def _put(self, user_id: str, events: list[Event]) -> None:
        self._data[user_id] = (time.monotonic(), events)
        self._data.move_to_end(user_id)
        while len(self._data) > self.max_users:
            self._data.popitem(last=False)

    def histories(self, user_ids: list[str]) -> list[list[Event]]:
        with self._lock:
            return [list(self._live(u)[1]) for u in user_ids]

    def load(self, histories: dict[str, list[Event]], only_missing: bool = False) -> int:
        n = 0
        with self._lock:
            for user, events in histories.items():
                if only_missing and self._live(user)[1]:
                    continue
                self._put(user, events[: self.cap])
                n += 1
        return n

    def close(self) -> None:
        with self._lock:
            self._data.clear()


class RedisStore:
    """Redis lists ``rec:hist:<user>``: LPUSH + LTRIM + EXPIRE per event batch, pipelined LRANGE per read batch."""

    backend = "redis"

    def __init__(
        self, url: str, cap: int = 100, ttl_s: int = 90 * 86400, timeout_s: float = 0.05, retry_s: float = 1.0
    ) -> None:
        import redis

        self.url, self.cap, self.ttl_s, self.retry_s = url, cap, int(ttl_s), retry_s
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )
        self._open_until = 0.0
        self._lock = threading.Lock()

    def _run(self, fill: Any) -> list[Any]:
        if time.monotonic() < self._open_until:
            raise StoreUnavailable(f"redis at {self.url} failed recently; retrying after {self.retry_s}s")
        try:
            pipe = self._client.pipeline(transaction=False)
            fill(pipe)
            out: list[Any] = pipe.execute()
            return out
        except Exception as e:  # noqa: BLE001 - any client or connection error means "store unavailable": degrade
            with self._lock:
                self._open_until = time.monotonic() + self.retry_s
            self._client.connection_pool.disconnect()
            raise StoreUnavailable(f"redis at {self.url}: {e!r}") from None

    def append(self, user_id: str, events: list[Event]) -> None:
        key = KEY_PREFIX + user_id

        def fill(p: Any) -> None:
            p.lpush(key, *(e.encode() for e in events))
            p.ltrim(key, 0, self.cap - 1)
            p.expire(key, self.ttl_s)

        self._run(fill)

    def histories(self, user_ids: list[str]) -> list[list[Event]]:
        if not user_ids:
            return []

        def fill(p: Any) -> None:
            for u in user_ids:
                p.lrange(KEY_PREFIX + u, 0, self.cap - 1)

        return [[Event.decode(x) for x in row] for row in self._run(fill)]

    def load(self, histories: dict[str, list[Event]], only_missing: bool = False, chunk: int = 500) -> int:
        """Replace each user's list (newest first) in chunks of ``chunk`` users per round trip."""
        users = list(histories)
        for i in range(0, len(users), chunk):
            part = users[i : i + chunk]

            def fill(p: Any, part: list[str] = part) -> None:
                for u in part:
                    key = KEY_PREFIX + u
                    p.delete(key)
                    items = [e.encode() for e in histories[u][: self.cap]]
                    if items:
                        p.rpush(key, *items)
                        p.expire(key, self.ttl_s)

            self._run(fill)
        return len(users)

    def close(self) -> None:
        self._client.close()


class SharedFileStore:
    """SQLite in the pod's private folder: the embedded default when several worker processes serve one pod, so an
    event posted to one worker is seen by all (WAL mode; one short transaction per batch read or append)."""

    backend = "pod-sqlite"

    def __init__(self, path: Path, cap: int = 100, ttl_s: float = 90 * 86400, max_users: int = 200_000) -> None:
        import sqlite3

        self.cap, self.ttl_s, self.max_users = cap, ttl_s, max_users
        self._db = sqlite3.connect(str(path), timeout=5.0, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._appends = 0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=OFF")  # ephemeral: the pod's folder dies with the pod
            self._db.execute("CREATE TABLE IF NOT EXISTS hist (user TEXT PRIMARY KEY, ts REAL, entries TEXT)")

    def _read(self, user_id: str, now: float) -> list[str]:
        row = self._db.execute("SELECT ts, entries FROM hist WHERE user = ?", (user_id,)).fetchone()
        if row is None or now - row[0] > self.ttl_s or not row[1]:
            return []
        return str(row[1]).split("\n")

    def append(self, user_id: str, events: list[Event]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                entries = [e.encode() for e in reversed(events)] + self._read(user_id, now)
                self._db.execute(
                    "INSERT OR REPLACE INTO hist VALUES (?, ?, ?)", (user_id, now, "\n".join(entries[: self.cap]))
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._appends += 1
            if self._appends % 1000 == 0:  # bound the file: drop the least recently active users
                self._db.execute(
                    "DELETE FROM hist WHERE user IN (SELECT user FROM hist ORDER BY ts DESC LIMIT -1 OFFSET ?)",
                    (self.max_users,),
                )

    def histories(self, user_ids: list[str]) -> list[list[Event]]:
        now = time.time()
        with self._lock:
            return [[Event.decode(x) for x in self._read(u, now)] for u in user_ids]

    def load(self, histories: dict[str, list[Event]], only_missing: bool = False) -> int:
        now, n = time.time(), 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # workers seeding at once: each user is written once
            try:
                for user, events in histories.items():
                    if only_missing and self._read(user, now):
                        continue
                    self._db.execute(
                        "INSERT OR REPLACE INTO hist VALUES (?, ?, ?)",
                        (user, now, "\n".join(e.encode() for e in events[: self.cap])),
                    )
                    n += 1
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return n

    def close(self) -> None:
        with self._lock:
            self._db.close()


def make_store(redis_url: str | None, cap: int, ttl_s: int) -> FeatureStore:
    """Redis when a URL is configured (``REDIS_URL``); else, with several worker processes, one SQLite file they
    share; else the in-process store."""
    if redis_url:
        return RedisStore(redis_url, cap, ttl_s)
    from app.pod import shared_folder

    folder = shared_folder()
    if folder is not None:
        return SharedFileStore(folder / "feature-store.sqlite", cap, ttl_s)
    return InProcessStore(cap, ttl_s)


def purchased(events: Iterable[Event]) -> set[str]:
    return {e.item_id for e in events if e.type == "purchase"}
