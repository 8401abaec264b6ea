"""The embedded feature stores stay bounded without costing requests: a packed in-process store under a memory
cap, and a pod SQLite file trimmed through an index by a background thread, never inside an append."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from app.tasks.recommend.store import Event, InProcessStore, SharedFileStore
from tests.fixtures.servers import wait_until


def _history(n: int, offset: int = 0) -> list[Event]:
    return [Event(f"{85000 + offset + i}A", ("view", "cart", "purchase")[i % 3]) for i in range(n)]


def test_in_process_store_holds_100_events_per_user_in_about_a_kilobyte() -> None:
    users = 5_000
    tracemalloc.start()
    try:
        store = InProcessStore()
        before = tracemalloc.get_traced_memory()[0]
        for u in range(users):
            store.load({f"customer-{u:06d}": _history(100, u)})
        per_user = (tracemalloc.get_traced_memory()[0] - before) / users
    finally:
        tracemalloc.stop()
    # 200,000 users must fit the chart's 2 Gi with the model and runtime: ~1 KB each is ~0.2 GB
    assert per_user < 2_000, f"{per_user:.0f} bytes per user of 100 events"
    assert abs(store.size_bytes / users - per_user) < 0.25 * per_user, (store.size_bytes / users, per_user)


def test_in_process_store_evicts_least_recent_users_beyond_its_memory_cap() -> None:
    store = InProcessStore(max_bytes=200_000)
    for u in range(1_000):
        store.append(f"u{u}", _history(10, u))
        if u == 0:
            first = store.histories(["u0"])[0]
    assert store.size_bytes <= 200_000, store.size_bytes
    assert 0 < len(store) < 1_000, len(store)
    assert store.histories(["u0"]) == [[]], "the least recently active user should have been evicted"
    assert store.histories(["u999"])[0] == list(reversed(_history(10, 999)))
    assert first == list(reversed(_history(10, 0)))


def test_in_process_store_keeps_the_newest_cap_entries_and_odd_ids() -> None:
    store = InProcessStore(cap=3)
    store.append("u", [Event("a", "view"), Event("b", "cart")])
    store.append("u", [Event("c", "purchase"), Event("d\nx", "other")])
    assert store.histories(["u", "v"]) == [[Event("d x", "other"), Event("c", "purchase"), Event("b", "cart")], []]


def test_appends_never_trim_the_shared_file(tmp_path: Path) -> None:
    store = SharedFileStore(tmp_path / "s.sqlite", max_users=100, trim_interval_s=None)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    for i in range(2_500):
        store.append(f"u{i}", [Event("i", "view")])
    deletes = [s for s in statements if "DELETE" in s.upper()]
    assert not deletes, f"an append ran {len(deletes)} deletes, e.g. {deletes[0]!r}"


def test_trim_uses_the_time_index_and_bounds_the_file(tmp_path: Path) -> None:
    store = SharedFileStore(tmp_path / "s.sqlite", max_users=300, trim_interval_s=None)
    store.load({f"seed{i}": _history(3) for i in range(500)})  # one timestamp for all: ties broken by rowid
    for i in range(200):
        store.append(f"live{i}", [Event("i", "view")])
    plans = [
        " ".join(str(r[-1]) for r in store._db.execute("EXPLAIN QUERY PLAN " + q, args).fetchall())
        for q, args in (
            ("SELECT ts, rowid FROM hist ORDER BY ts DESC, rowid DESC LIMIT 1 OFFSET ?", (300,)),
            ("SELECT rowid FROM hist WHERE ts < ? ORDER BY ts, rowid LIMIT ?", (1.0, 500)),
        )
    ]
    assert all("INDEX hist_ts" in p and "TEMP B-TREE" not in p for p in plans), plans
    assert store.trim() == 400
    left = store._db.execute("SELECT count(*) FROM hist").fetchone()[0]
    assert left == 300, left
    assert store.histories(["live199", "seed499", "seed0"])[0] == [Event("i", "view")]
    assert store.histories(["seed0"]) == [[]], "the oldest seeded users go first"


def test_background_trimmer_bounds_the_file(tmp_path: Path) -> None:
    store = SharedFileStore(tmp_path / "s.sqlite", max_users=50, trim_interval_s=0.05)
    try:
        for i in range(400):
            store.append(f"u{i}", [Event("i", "view")])

        def rows() -> int:
            return int(store._db.execute("SELECT count(*) FROM hist").fetchone()[0])

        wait_until(lambda: rows() <= 50, 30, "the background trim to bring the file to 50 users")
        assert store.histories(["u399"])[0] == [Event("i", "view")]
    finally:
        store.close()
