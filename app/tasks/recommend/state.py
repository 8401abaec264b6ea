"""State of a published recommendation version (``rec-v1``), shared by ``compress`` (writer) and the service.

``rec.json``: the catalogue (index -> item id and title; index 0 is padding), the model's fixed shapes
(history length, top-K, exclusion width) and feature-store limits. ``histories.json``: every known customer's
recent items (newest first) at the end of the training log, used to seed the in-process feature store.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from app.tasks.recommend.ids import duplicates

KIND = "recommend"
CODE_VERSION = "rec-v1.0"
STATE_FILE = "rec.json"
HISTORIES_FILE = "histories.json"


@dataclass
class RecState:
    items: list[str]
    titles: list[str]
    history_len: int
    top_k: int
    max_exclude: int
    history_cap: int
    history_ttl_s: int
    popular: list[int] = field(default_factory=list)
    """Item indices by recent popularity (the degraded answer when no history is at hand)."""
    exclude_seen: bool = False
    """Never recommend what a customer already has: the version ships ``seen.json`` (see ``seen.py``)."""
    history_items: int = 0
    """Items the user tower's history embedding knows (indices below this); 0 = all. A catalogue snapshot
    appends items the tower has never seen: they can be recommended, but are skipped when read in a history."""
    retired: list[int] = field(default_factory=list)
    """Item indices never returned (dropped from the catalogue, or added without a vector)."""

    def save(self, path: Path) -> None:
        """Write ``rec.json``; refuses a catalogue listing an id twice (the service maps each id to one index)."""
        if dup := duplicates(self.items):
            raise ValueError(f"{path.name}: item ids listed more than once: {', '.join(map(repr, dup))}")
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> RecState:
        raw = json.loads(path.read_text())
        state = cls(**raw)
        if len(state.items) != len(state.titles) or not state.items or state.items[0] != "":
            raise ValueError(f"{path}: items/titles are inconsistent (index 0 must be the padding entry '')")
        return state


def save_histories(path: Path, histories: dict[str, list[str]]) -> None:
    path.write_text(json.dumps(histories, separators=(",", ":")))


def load_histories(path: Path) -> dict[str, list[str]]:
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object user -> [item ids]")
    return {str(k): [str(i) for i in v] for k, v in raw.items()}
