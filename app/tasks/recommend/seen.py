"""What each known customer already has (``seen.json``, shipped with a version whose catalogue sets
``exclude_seen``): every item of any interaction in the training log, any rating, not only the recent history
the feature store keeps. The service adds it to a row's exclusions, so such an item is never recommended."""

from __future__ import annotations

import json
from pathlib import Path

SEEN_FILE = "seen.json"


def save_seen(path: Path, seen: dict[str, list[str]]) -> None:
    path.write_text(json.dumps(seen, separators=(",", ":")))


class SeenSets:
    """user id -> catalogue indices the user has seen, mapped once at load (the batch side only looks up)."""

    def __init__(self, seen: dict[str, list[int]]) -> None:
        self._seen = seen

    @classmethod
    def load(cls, path: Path, index: dict[str, int]) -> SeenSets:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected an object user -> [item ids]")
        return cls({str(u): [index[str(i)] for i in items if str(i) in index] for u, items in raw.items()})

    def of(self, user_id: str | None) -> list[int]:
        return [] if user_id is None else self._seen.get(user_id, [])

    def __len__(self) -> int:
        return len(self._seen)
