"""What each known customer already has (``seen.json``, shipped with a version whose catalogue sets
``exclude_seen``): every item of any interaction in the training log, any rating, not only the recent history
the feature store keeps. The service adds it to a row's exclusions, so such an item is never recommended."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.tasks.recommend.ids import IdMap

SEEN_FILE = "seen.json"


def save_seen(path: Path, seen: dict[str, list[str]]) -> None:
    path.write_text(json.dumps(seen, separators=(",", ":")))


class SeenSets:
    """user id -> catalogue indices the user has seen (an int32 array each), mapped once at load (the batch side
    only looks up)."""

    def __init__(self, seen: dict[str, np.ndarray]) -> None:
        self._seen = seen
        self._none = np.zeros(0, np.int32)

    @classmethod
    def load(cls, path: Path, ids: IdMap) -> SeenSets:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected an object user -> [item ids]")
        out = {}
        for u, items in raw.items():
            got = ids.indices([str(i) for i in items])
            out[str(u)] = got[got > 0].astype(np.int32)
        return cls(out)

    def of(self, user_id: str | None) -> np.ndarray:
        return self._none if user_id is None else self._seen.get(user_id, self._none)

    def __len__(self) -> int:
        return len(self._seen)
