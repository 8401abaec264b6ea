"""The serving worker's compact item-id map: both directions, unknown ids, duplicates refused at publish."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.tasks.recommend.ids import CHUNK, UNKNOWN, IdMap, StringColumn
from app.tasks.recommend.state import STATE_FILE, RecState

ITEMS = ["", "85123A", "22423", "7", "POST", "caf\u00e9-\u00e9t\u00e9", "84879", "ZZZ-LONGEST-ID-00001"]


def test_round_trip_every_index() -> None:
    ids = IdMap(ITEMS)
    assert len(ids) == len(ITEMS)
    assert [ids[i] for i in range(len(ITEMS))] == ITEMS, "index -> id must give back the catalogue"
    got = ids.indices(ITEMS[1:]).tolist()
    assert got == list(range(1, len(ITEMS))), f"id -> index of every item, got {got}"


def test_unknown_ids_answer_unknown() -> None:
    ids = IdMap(ITEMS)
    probes = ["", "8512", "85123A ", "85123a", "ZZZ-LONGEST-ID-000010", "7\x00", "\ud800", "99999"]
    got = ids.indices(probes).tolist()
    assert got == [UNKNOWN] * len(probes), f"no probe is a catalogue item (padding, prefix, too long...), got {got}"
    assert ids.get("nope", 0) == 0 and "nope" not in ids and "POST" in ids and ids.get("POST") == 4
    assert ids.indices([]).tolist() == []


def test_titles_column() -> None:
    titles = ["", "WHITE HANGING HEART", "", "caf\u00e9", "x" * 300]
    col = StringColumn(titles)
    assert [col[i] for i in range(len(titles))] == titles


def test_duplicate_ids_are_refused_at_publish(tmp_path: Path) -> None:
    items = ["", "A", "B", "A"]
    state = RecState(items, items, history_len=4, top_k=3, max_exclude=5, history_cap=10, history_ttl_s=60)
    with pytest.raises(ValueError, match="'A'"):
        state.save(tmp_path / STATE_FILE)
    assert not (tmp_path / STATE_FILE).exists(), "nothing written for a refused catalogue"
    assert IdMap(items).get("A") == 3, "an old version with a duplicate answers the last index, as its dict did"


def test_catalogues_larger_than_one_conversion_chunk() -> None:
    n = CHUNK + 1000  # built in numpy calls of CHUNK items: the boundary must not shift anything
    items = [""] + [f"I{i}" for i in range(n)]
    ids, titles = IdMap(items), StringColumn([f"title {i}" for i in range(n + 1)])
    probe = [1, CHUNK - 1, CHUNK, CHUNK + 1, n]
    assert [ids[i] for i in probe] == [items[i] for i in probe]
    assert ids.indices([items[i] for i in probe]).tolist() == probe
    assert [titles[i] for i in probe] == [f"title {i}" for i in probe]
