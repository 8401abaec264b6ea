"""The pod-shared feature store (SQLite): what one worker process appends, every other one reads."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from app.tasks.recommend.store import Event, SharedFileStore


def _append_from_another_process(path: str) -> None:
    SharedFileStore(Path(path), cap=3).append("u1", [Event("from-child", "purchase")])


def test_events_from_another_process_are_seen_newest_first_and_capped(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    here = SharedFileStore(db, cap=3)
    here.append("u1", [Event("i1", "view"), Event("i2", "cart")])
    child = multiprocessing.get_context("spawn").Process(target=_append_from_another_process, args=(str(db),))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert here.histories(["u1", "nobody"]) == [
        [Event("from-child", "purchase"), Event("i2", "cart"), Event("i1", "view")],
        [],
    ]
    here.append("u1", [Event("i5", "view")])
    assert [e.item_id for e in here.histories(["u1"])[0]] == ["i5", "from-child", "i2"]  # capped at 3


def test_seeding_only_missing_never_overwrites_live_histories(tmp_path: Path) -> None:
    a, b = SharedFileStore(tmp_path / "s.sqlite"), SharedFileStore(tmp_path / "s.sqlite")
    a.append("u1", [Event("live", "view")])
    assert b.load({"u1": [Event("seed", "view")], "u2": [Event("seed", "view")]}, only_missing=True) == 1
    assert [e.item_id for e in a.histories(["u1"])[0]] == ["live"]
    assert [e.item_id for e in a.histories(["u2"])[0]] == ["seed"]


def test_expired_histories_are_empty(tmp_path: Path) -> None:
    store = SharedFileStore(tmp_path / "s.sqlite", ttl_s=-1)  # everything is already past its TTL
    store.append("u1", [Event("i1", "view")])
    assert store.histories(["u1"]) == [[]]
