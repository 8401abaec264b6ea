"""Live catalogue availability: items marked unavailable are never recommended, from the next batch on.

Why: stock changes every minute and a new model version per change would be absurd; the filter is applied after
scoring (with the other exclusions), so no model or index changes. Every backend keeps a change counter beside
the set: a batch reads the counter (one cheap read) and re-reads the set only when it moved, so a mark is seen by
every worker process on the first batch it starts after the mark was acknowledged.

Backends follow the feature store's choice (:func:`app.tasks.recommend.store.make_store`): Redis (a set and a
counter, shared by every pod), the pod's SQLite file (several worker processes), or in-process (one worker).
A Redis that does not answer keeps the last set it returned (stale but still filtering) and fails marks.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from app.tasks.recommend.store import StoreUnavailable, _Breaker

SET_KEY, COUNTER_KEY = "rec:unavailable", "rec:unavailable:changes"
MAX_ITEMS_PER_CALL = 1000


class Availability(Protocol):
    backend: str

    def mark(self, items: list[str], available: bool) -> int:
        """Mark ``items``; returns how many items are unavailable afterwards. Raises ``StoreUnavailable``."""
        ...

    def unavailable(self) -> frozenset[str]:
        """The current set (the same object while nothing changed, so callers can cache what they derive)."""
        ...

    def close(self) -> None: ...


class InProcessAvailability:
    backend = "memory"

    def __init__(self) -> None:
        self._items: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def mark(self, items: list[str], available: bool) -> int:
        with self._lock:
            self._items = self._items - set(items) if available else self._items | set(items)
            return len(self._items)

    def unavailable(self) -> frozenset[str]:
        return self._items

    def close(self) -> None:
        pass


class SharedFileAvailability:
    """SQLite in the pod's folder: a table of unavailable items and a change counter (one row)."""

    backend = "pod-sqlite"

    def __init__(self, path: Path) -> None:
        import sqlite3

        self._db = sqlite3.connect(str(path), timeout=5.0, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._seen, self._items = -1, frozenset[str]()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS unavailable (item TEXT PRIMARY KEY)")
            self._db.execute("CREATE TABLE IF NOT EXISTS changes (id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER)")
            self._db.execute("INSERT OR IGNORE INTO changes VALUES (0, 0)")

    def mark(self, items: list[str], available: bool) -> int:
        sql = "DELETE FROM unavailable WHERE item = ?" if available else "INSERT OR IGNORE INTO unavailable VALUES (?)"
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(sql, [(i,) for i in items])
                self._db.execute("UPDATE changes SET n = n + 1 WHERE id = 0")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return len(self._refresh())

    def _refresh(self) -> frozenset[str]:
        n = int(self._db.execute("SELECT n FROM changes WHERE id = 0").fetchone()[0])
        if n != self._seen:
            self._items = frozenset(r[0] for r in self._db.execute("SELECT item FROM unavailable"))
            self._seen = n
        return self._items

    def unavailable(self) -> frozenset[str]:
        with self._lock:
            return self._refresh()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisAvailability:
    """A Redis set and a change counter; a batch costs one ``GET`` unless the counter moved."""

    backend = "redis"

    def __init__(self, url: str, timeout_s: float = 0.05, retry_s: float = 1.0) -> None:
        self._reads = _Breaker("read", url, timeout_s, retry_s)
        self._writes = _Breaker("write", url, timeout_s, retry_s)
        self._lock = threading.Lock()
        self._seen: bytes | None = None
        self._items = frozenset[str]()

    def mark(self, items: list[str], available: bool) -> int:
        def fill(p: Any) -> None:
            (p.srem if available else p.sadd)(SET_KEY, *items)
            p.incr(COUNTER_KEY)
            p.scard(SET_KEY)

        return int(self._writes.run(fill)[-1])

    def unavailable(self) -> frozenset[str]:
        with self._lock:
            try:
                (seen,) = self._reads.run(lambda p: p.get(COUNTER_KEY))
                if seen != self._seen:
                    seen, members = self._reads.run(lambda p: (p.get(COUNTER_KEY), p.smembers(SET_KEY)))
                    self._items = frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in members)
                    self._seen = seen
            except StoreUnavailable:
                pass  # keep filtering with the last set read; marks fail (and say so) until Redis answers
            return self._items

    def close(self) -> None:
        self._reads.close()
        self._writes.close()


def make_availability(redis_url: str | None) -> Availability:
    """The same backend choice as the feature store's."""
    if redis_url:
        return RedisAvailability(redis_url)
    from app.pod import shared_folder

    folder = shared_folder()
    if folder is not None:
        return SharedFileAvailability(folder / "availability.sqlite")
    return InProcessAvailability()
