"""``exclude_seen`` on the serving side: a customer's shipped seen set joins the row's exclusions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.tasks.recommend.ids import IdMap
from app.tasks.recommend.seen import SeenSets, save_seen
from app.tasks.recommend.state import RecState
from app.tasks.recommend.store import Event, make_store
from app.tasks.recommend.task import RecommendTask


class _Counter:
    def labels(self, *_: str) -> _Counter:
        return self

    def inc(self, *_: int) -> None:
        return None


class _Metrics:
    degraded = _Counter()
    events = _Counter()


def _task(tmp_path: Path, exclude_seen: bool) -> RecommendTask:
    items = ["", "a", "b", "c", "d"]
    state = RecState(items, [i.upper() for i in items], 4, 3, 10, 10, 100, exclude_seen=exclude_seen)
    save_seen(tmp_path / "seen.json", {"u": ["a", "c", "not-in-catalogue"]})
    store = make_store(None, 10, 100, max_users=100, max_bytes=10**6, trim_interval_s=60)
    store.load({"u": [Event("b", "purchase")]})
    seen = SeenSets.load(tmp_path / "seen.json", IdMap(items))
    metrics: Any = _Metrics()
    return RecommendTask(state, store, metrics, seen=seen)


def test_seen_items_and_stored_purchases_are_excluded(tmp_path: Path) -> None:
    row: dict[str, Any] = {"user_id": "u", "history": None, "exclude": [], "exclude_purchased": False}
    out = _task(tmp_path, True).prepare([row])
    assert sorted(out["exclude"][0].tolist()) == [1, 2, 3], f"expected a, b, c excluded, got {out['exclude']}"
    off = _task(tmp_path, False).prepare([row])
    assert off["exclude"][0].tolist() == [0], f"without exclude_seen nothing is excluded, got {off['exclude']}"
