"""Catalogue snapshot arithmetic: indices kept, new items appended, dropped and vector-less items retired."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np

from app.tasks.recommend.state import RecState
from compress.recommend.catalogue import ItemSide, Source, snapshot


def _source() -> Source:
    items = ["", "A1", "A2", "A3"]
    titles = ["", "RED HEART CANDLE", "BLUE HEART CANDLE", "GARDEN TOOL SET"]
    vectors = np.array([[0, 0, 0], [1, 0, 0.5], [0, 1, 0.5], [0, 0, 2]], np.float32)
    side = ItemSide(items, titles, vectors, np.array([0, 1, 2, 3], np.float32))
    state = RecState(items, titles, history_len=4, top_k=3, max_exclude=5, history_cap=10, history_ttl_s=60)
    return Source(Path("."), cast(Any, None), state, side)


def test_snapshot_keeps_indices_appends_new_items_and_retires_what_has_no_vector() -> None:
    src = _source()
    items = ["A1", "A3", "N1", "N2"]
    side, change = snapshot(src, items, ["", "GARDEN TOOL SET XL", "PINK HEART CANDLE", "QZXV"], "title")
    assert side.items == ["", "A1", "A2", "A3", "N1", "N2"], side.items
    assert side.titles[3] == "GARDEN TOOL SET XL" and side.titles[1] == "RED HEART CANDLE", side.titles
    assert side.retired == [2, 5], f"A2 (dropped) and N2 (no shared title word) must be retired: {side.retired}"
    assert np.allclose(side.vectors[:4], src.side.vectors), "known items keep their vectors"
    assert np.allclose(side.vectors[4], src.side.vectors[[1, 2]].mean(0)), side.vectors[4]  # the two HEART CANDLEs
    assert side.repeat_item[4] == 1.5 and side.cold == [4], (side.repeat_item, side.cold)
    assert change == {
        "items": 5, "added": 2, "added_with_title_vector": 1, "added_without_vector": 1, "retired": 2,
        "cold_start": "title",
    }  # fmt: skip


def test_skip_cold_start_retires_every_new_item() -> None:
    side, change = snapshot(_source(), ["A1", "A2", "A3", "N1"], ["", "", "", "RED HEART CANDLE"], "skip")
    assert side.retired == [4] and not side.vectors[4].any(), (side.retired, side.vectors[4])
    assert change["added_without_vector"] == 1 and change["retired"] == 1, change
