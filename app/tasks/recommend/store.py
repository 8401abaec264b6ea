"""Per-user recent-history lists: append on ``/v1/events``, read once per batch on ``/v1/recommend``.

Entries are ``"<type>|<item_id>"`` strings, newest first, capped at ``cap`` per user, expiring ``ttl_s`` after
the user's last event. Three backends with one interface:

* :class:`InProcessStore` — bounded (LRU over users), the embedded default in a single process;
* :class:`SharedFileStore` — SQLite in the pod's private folder, the embedded default with several worker
  processes (an event posted to any worker is seen by all);
* :class:`RedisStore` — a sync client with short socket timeouts; one pipelined round trip per batch read.
  After a failure it stays "open" (answers :class:`StoreUnavailable` at once) for ``retry_s`` and then tries
  again, so a dead Redis costs one fast failure per batch at most, and reconnection is automatic. Reads and
  writes are broken separately: failing writes never turn away reads that would succeed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from app.logs import redact, redact_url

EVENT_TYPES = ("view", "cart", "purchase")
KEY_PREFIX = "rec:hist:"
LOG = logging.getLogger(__name__)


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


_TYPE_CODE = {t: t[0] for t in EVENT_TYPES}  # one character per entry: v / c / p
_CODE_TYPE = {t[0]: t for t in EVENT_TYPES}
USER_OVERHEAD_BYTES = 200
"""What one user's entry costs the in-process store beyond its key and entries (dict slot, tuple, float, bytes
header), measured with tracemalloc: what ``max_bytes`` counts per user."""


def _pack_one(e: Event) -> str:
    code = _TYPE_CODE.get(e.type)
    entry = code + e.item_id if code else "?" + e.encode()
    return entry.replace("\n", " ")  # entries are newline-separated; such an id is in no catalogue anyway


def _pack(events: Iterable[Event]) -> bytes:
    return "\n".join(_pack_one(e) for e in events).encode()


def _unpack(blob: bytes) -> list[Event]:
    if not blob:
        return []
    out = []
    for entry in blob.decode().split("\n"):
        kind = _CODE_TYPE.get(entry[:1])
        out.append(Event(entry[1:], kind) if kind else Event.decode(entry[1:]))
    return out


class InProcessStore:
    """User -> (last event time, one ``bytes`` of newest-first entries), LRU-evicted beyond ``max_users`` users or
    ``max_bytes`` in all; thread-safe (batches read in a worker thread).

    One packed ``bytes`` per user instead of a list of :class:`Event` objects: 100 events of a 6-character item
    id take ~0.9 KB instead of ~17 KB, so 200,000 such users fit in ~220 MB instead of 3-4 GB."""

    backend = "memory"

    def __init__(
        self, cap: int = 100, ttl_s: float = 90 * 86400, max_users: int = 200_000, max_bytes: int = 512 * 2**20
    ) -> None:
        self.cap, self.ttl_s, self.max_users, self.max_bytes = cap, ttl_s, max_users, max_bytes
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        """Estimated memory held: keys, packed entries and :data:`USER_OVERHEAD_BYTES` per user."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def append(self, user_id: str, events: list[Event]) -> None:
        with self._lock:
            old = self._live(user_id)
            new = _pack(reversed(events))
            blob = new + b"\n" + old if old else new
            if blob.count(b"\n") >= self.cap:  # keep the newest ``cap`` entries
                blob = b"\n".join(blob.split(b"\n", self.cap)[: self.cap])
            self._put(user_id, blob)

    def _live(self, user_id: str) -> bytes:
        got = self._data.get(user_id)
        if got is None or time.monotonic() - got[0] > self.ttl_s:
            return b""
        return got[1]

    @staticmethod
    def _cost(user_id: str, blob: bytes) -> int:
        return len(user_id) + len(blob) + USER_OVERHEAD_BYTES

    def _put(self, user_id: str, blob: bytes) -> None:
        old = self._data.get(user_id)
        if old is not None:
            self._bytes -= self._cost(user_id, old[1])
        self._data[user_id] = (time.monotonic(), blob)
        self._data.move_to_end(user_id)
        self._bytes += self._cost(user_id, blob)
        while len(self._data) > self.max_users or (self._bytes > self.max_bytes and len(self._data) > 1):
            gone, (_, gone_blob) = self._data.popitem(last=False)
            self._bytes -= self._cost(gone, gone_blob)

    def histories(self, user_ids: list[str]) -> list[list[Event]]:
        with self._lock:
            blobs = [self._live(u) for u in user_ids]
        return [_unpack(b) for b in blobs]

    def load(self, histories: dict[str, list[Event]], only_missing: bool = False) -> int:
        n = 0
        with self._lock:
            for user, events in histories.items():
                if only_missing and self._live(user):
                    continue
                self._put(user, _pack(events[: self.cap]))
                n += 1
        return n

    def close(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0


class _Breaker:
    """One Redis connection pool and its circuit breaker: after a failure it answers :class:`StoreUnavailable` at
    once for ``retry_s``, then lets the next call try again."""

    def __init__(self, kind: str, url: str, timeout_s: float, retry_s: float) -> None:
        import redis

        self.kind, self.url, self.retry_s = kind, url, retry_s
        self.client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )
        self._open_until = 0.0
        self._lock = threading.Lock()

    def run(self, fill: Any) -> list[Any]:
        if time.monotonic() < self._open_until:
            raise StoreUnavailable(
                f"redis {self.kind}s at {redact_url(self.url)} failed recently; retrying after {self.retry_s}s"
            )
        import redis

        try:
            pipe = self.client.pipeline(transaction=False)
            fill(pipe)
            out: list[Any] = pipe.execute()
            return out
        except Exception as e:  # noqa: BLE001 - any client or connection error means "store unavailable": degrade
            with self._lock:
                self._open_until = time.monotonic() + self.retry_s
            if not isinstance(e, redis.ResponseError):  # a refused command (OOM) leaves the connection usable
                self.client.connection_pool.disconnect()
            raise StoreUnavailable(f"redis {self.kind} at {redact_url(self.url)}: {redact(repr(e))}") from None

    def close(self) -> None:
        self.client.close()


class RedisStore:
    """Redis lists ``rec:hist:<user>``: LPUSH + LTRIM + EXPIRE per event batch, pipelined LRANGE per read batch.

    Reads and writes have their own connection pool and circuit breaker: a Redis that refuses writes (maxmemory
    with ``noeviction``, ``CLIENT PAUSE WRITE``, a read-only replica) still answers reads, and recommendations
    keep their stored histories while events are dropped."""

    backend = "redis"

    def __init__(
        self, url: str, cap: int = 100, ttl_s: int = 90 * 86400, timeout_s: float = 0.05, retry_s: float = 1.0
    ) -> None:
        self.url, self.cap, self.ttl_s, self.retry_s = url, cap, int(ttl_s), retry_s
        self._reads = _Breaker("read", url, timeout_s, retry_s)
        self._writes = _Breaker("write", url, timeout_s, retry_s)

    def append(self, user_id: str, events: list[Event]) -> None:
        key = KEY_PREFIX + user_id

        def fill(p: Any) -> None:
            p.lpush(key, *(e.encode() for e in events))
            p.ltrim(key, 0, self.cap - 1)
            p.expire(key, self.ttl_s)

        self._writes.run(fill)

    def histories(self, user_ids: list[str]) -> list[list[Event]]:
        if not user_ids:
            return []

        def fill(p: Any) -> None:
            for u in user_ids:
                p.lrange(KEY_PREFIX + u, 0, self.cap - 1)

        return [[Event.decode(x) for x in row] for row in self._reads.run(fill)]

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

            self._writes.run(fill)
        return len(users)

    def close(self) -> None:
        self._reads.close()
        self._writes.close()


class SharedFileStore:
    """SQLite in the pod's private folder: the embedded default when several worker processes serve one pod, so an
    event posted to one worker is seen by all (WAL mode; one short transaction per batch read or append).

    The file is bounded by a background thread, never by a request: every ``trim_interval_s`` it drops expired
    users and the least recently active beyond ``max_users``, through the index on ``ts``, ``chunk`` rows per
    transaction, on its own connection, so appends and reads wait at most for one small delete."""

    backend = "pod-sqlite"

    def __init__(
        self,
        path: Path,
        cap: int = 100,
        ttl_s: float = 90 * 86400,
        max_users: int = 200_000,
        trim_interval_s: float | None = 5.0,
    ) -> None:
        import sqlite3

        self.path, self.cap, self.ttl_s, self.max_users = path, cap, ttl_s, max_users
        self._db = sqlite3.connect(str(path), timeout=5.0, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=OFF")  # ephemeral: the pod's folder dies with the pod
            self._db.execute("CREATE TABLE IF NOT EXISTS hist (user TEXT PRIMARY KEY, ts REAL, entries TEXT)")
            self._db.execute("CREATE INDEX IF NOT EXISTS hist_ts ON hist (ts)")
        self._stop = threading.Event()
        self._trimmer: threading.Thread | None = None
        if trim_interval_s is not None:
            self._trimmer = threading.Thread(
                target=self._trim_loop, args=(trim_interval_s,), name="feature-store-trim", daemon=True
            )
            self._trimmer.start()

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
                entries = [e.encode().replace("\n", " ") for e in reversed(events)] + self._read(user_id, now)
                self._db.execute(
                    "INSERT OR REPLACE INTO hist VALUES (?, ?, ?)", (user_id, now, "\n".join(entries[: self.cap]))
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def trim(self, db: Any = None, chunk: int = 500) -> int:
        """Delete expired users and the least recently active beyond ``max_users``; returns the rows deleted.

        Cheap when there is nothing to do: rowids are unique, so ``max(rowid) - min(rowid) + 1`` bounds the row
        count from above without a scan; only beyond that does it walk the ``ts`` index to the cut-off."""
        if db is None:
            with self._lock:
                return self.trim(self._db, chunk)
        deleted = self._delete(db, "ts < ?", (time.time() - self.ttl_s,), chunk)
        lo = db.execute("SELECT min(rowid) FROM hist").fetchone()[0]  # one aggregate each: O(1) on the rowid tree
        hi = db.execute("SELECT max(rowid) FROM hist").fetchone()[0]
        if lo is None or hi - lo + 1 <= self.max_users:
            return deleted
        cut = db.execute(  # the newest row beyond max_users; ties on ts are broken by rowid (newer = higher)
            "SELECT ts, rowid FROM hist ORDER BY ts DESC, rowid DESC LIMIT 1 OFFSET ?", (self.max_users,)
        ).fetchone()
        if cut is not None:
            deleted += self._delete(db, "ts < ?", (cut[0],), chunk)
            deleted += self._delete(db, "ts = ? AND rowid <= ?", (cut[0], cut[1]), chunk)
        return deleted

    def _delete(self, db: Any, where: str, args: tuple[float, ...], chunk: int) -> int:
        deleted = 0
        while not self._stop.is_set():
            n = int(
                db.execute(
                    f"DELETE FROM hist WHERE rowid IN (SELECT rowid FROM hist WHERE {where} ORDER BY ts, rowid LIMIT ?)",
                    (*args, chunk),
                ).rowcount
            )
            deleted += n
            if n < chunk:
                break
        return deleted

    def _trim_loop(self, interval_s: float) -> None:
        import sqlite3

        db = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None)
        try:
            while not self._stop.wait(interval_s):
                try:
                    self.trim(db)
                except sqlite3.Error as e:  # busy or locked by another worker's trim: the next pass catches up
                    LOG.debug("feature store trim skipped: %s", e)
        finally:
            db.close()

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
        self._stop.set()
        if self._trimmer is not None:
            self._trimmer.join(10)
        with self._lock:
            self._db.close()


def make_store(
    redis_url: str | None,
    cap: int,
    ttl_s: int,
    max_users: int = 200_000,
    max_bytes: int = 512 * 2**20,
    trim_interval_s: float = 5.0,
) -> FeatureStore:
    """Redis when a URL is configured (``REDIS_URL``); else, with several worker processes, one SQLite file they
    share; else the in-process store. ``max_users`` bounds both embedded stores, ``max_bytes`` the in-process one."""
    if redis_url:
        return RedisStore(redis_url, cap, ttl_s)
    from app.pod import shared_folder

    folder = shared_folder()
    if folder is not None:
        return SharedFileStore(folder / "feature-store.sqlite", cap, ttl_s, max_users, trim_interval_s)
    return InProcessStore(cap, ttl_s, max_users, max_bytes)


def purchased(events: Iterable[Event]) -> set[str]:
    return {e.item_id for e in events if e.type == "purchase"}
