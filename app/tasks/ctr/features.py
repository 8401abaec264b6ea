"""CTR feature pre-processing: one code path for training, evaluation and serving.

Raw rows (ints, hex category strings, missing values, as the log has them) become two tensors:
``dense`` float32 [N, n_dense] = standardised ``log1p(max(x, 0))`` (missing -> 0 before standardising) and
``sparse`` int64 [N, n_cat] = per-field vocabulary ids, where 0 = missing and 1 = rare/unseen (the
min-frequency bucket). The fitted state is a small JSON file published beside the model and named in its
manifest, so the server transforms requests exactly as the trainer transformed the training rows.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.tasks.ids import canonical

KIND = "ctr"
CODE_VERSION = "ctr-featurizer-1"
MISSING_ID = 0
RARE_ID = 1
FIRST_ID = 2


class FeatureError(ValueError):
    """A raw value cannot be turned into a feature (e.g. a dense field holding text)."""


def cat_key(value: Any) -> str | None:
    """Canonical string of a categorical value: JSON ints, CSV text and floats like 5.0 map to the same key."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


def raw_dense(value: Any, column: str) -> float:
    """The number a dense field holds, before ``log1p``: missing (None, NaN, '') -> NaN; booleans, non-numbers,
    infinities and ints beyond float range are refused. Shared by both featurization paths so they refuse alike."""
    if value is None or value == "":
        return math.nan
    if isinstance(value, bool):
        raise FeatureError(f"dense feature {column!r} must be a number, got a boolean")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise FeatureError(f"dense feature {column!r} must be a number, got {value!r}") from None
    except OverflowError:
        raise FeatureError(f"dense feature {column!r} is out of range") from None
    if math.isinf(x):
        raise FeatureError(f"dense feature {column!r} must be finite, got {value!r}")
    return x


def dense_value(value: Any, column: str) -> float:
    """``log1p(max(x, 0))`` of :func:`raw_dense`; missing -> NaN, to be replaced by the training mean."""
    x = raw_dense(value, column)
    return x if math.isnan(x) else math.log1p(max(x, 0.0))


def _dense_array(raw: Sequence[Any], column: str) -> np.ndarray:
    """``dense_value`` over a column; ints/floats (the common case) skip the per-value Python call."""
    try:
        x = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([dense_value(v, column) for v in raw], dtype=np.float64)
    if np.isinf(x).any() or any(isinstance(v, (bool, str)) for v in raw):
        return np.array([dense_value(v, column) for v in raw], dtype=np.float64)
    return np.log1p(np.maximum(x, 0.0))  # NaN (missing) stays NaN


def _cat_id(index: Mapping[str, int], value: Any) -> int:
    key = cat_key(value)
    return MISSING_ID if key is None else index.get(key, RARE_ID)


@dataclass
class CtrFeaturizer:
    """Fitted pre-processing state for one CTR model."""

    dense_columns: list[str]
    categorical_columns: list[str]
    min_freq: int = 2
    dense_mean: list[float] = field(default_factory=list)
    dense_std: list[float] = field(default_factory=list)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    _index: dict[str, dict[str, int]] = field(default_factory=dict, init=False, repr=False)

    # ---- fitting (training side) ----
    def fit(self, columns: Mapping[str, Sequence[Any]]) -> CtrFeaturizer:
        """Learn dense statistics and per-field vocabularies (values seen at least ``min_freq`` times)."""
        self.dense_mean, self.dense_std = [], []
        for c in self.dense_columns:
            x = np.array([dense_value(v, c) for v in columns[c]], dtype=np.float64)
            ok = x[~np.isnan(x)]
            mean = float(ok.mean()) if ok.size else 0.0
            std = float(ok.std()) if ok.size else 1.0
            self.dense_mean.append(mean)
            self.dense_std.append(std if std > 1e-6 else 1.0)
        self.vocab = {}
        for c in self.categorical_columns:
            counts = Counter(k for k in (cat_key(v) for v in columns[c]) if k is not None)
            kept = [k for k, n in counts.items() if n >= self.min_freq]
            self.vocab[c] = sorted(kept, key=lambda k: (-counts[k], k))
        self._index = {}
        return self

    @property
    def cardinalities(self) -> list[int]:
        """Embedding rows per field, including the missing and rare ids."""
        return [len(self.vocab[c]) + FIRST_ID for c in self.categorical_columns]

    def _lookup(self, column: str) -> dict[str, int]:
        idx = self._index.get(column)
        if idx is None:
            idx = {k: i + FIRST_ID for i, k in enumerate(self.vocab[column])}
            self._index[column] = idx
        return idx

    # ---- transforming (training and serving) ----
    def transform_columns(self, columns: Mapping[str, Sequence[Any]], n_rows: int) -> dict[str, np.ndarray]:
        """Columnar raw values -> ``{'dense': float32 [N, D], 'sparse': int64 [N, C]}``; absent columns are missing."""
        dense = np.empty((n_rows, len(self.dense_columns)), dtype=np.float32)
        for j, c in enumerate(self.dense_columns):
            raw = columns.get(c)
            x = np.full(n_rows, np.nan) if raw is None else _dense_array(raw, c)
            x = np.where(np.isnan(x), self.dense_mean[j], x)
            dense[:, j] = (x - self.dense_mean[j]) / self.dense_std[j]
        sparse = np.empty((n_rows, len(self.categorical_columns)), dtype=np.int64)
        for j, c in enumerate(self.categorical_columns):
            raw = columns.get(c)
            if raw is None:
                sparse[:, j] = MISSING_ID
                continue
            idx = self._lookup(c)
            # fast path: most values are already canonical strings and hit the vocabulary directly
            sparse[:, j] = [idx.get(v) or _cat_id(idx, v) if isinstance(v, str) else _cat_id(idx, v) for v in raw]
        return {"dense": dense, "sparse": sparse}

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Row dicts (as a request carries them) -> model inputs, via the same columnar path as training."""
        known = set(self.dense_columns) | set(self.categorical_columns)
        columns: dict[str, list[Any]] = {c: [] for c in known}
        for r in records:
            for c in known:
                columns[c].append(r.get(c))
        return self.transform_columns(columns, len(records))

    # ---- persistence ----
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "code_version": CODE_VERSION,
            "dense_columns": self.dense_columns,
            "categorical_columns": self.categorical_columns,
            "min_freq": self.min_freq,
            "dense_mean": self.dense_mean,
            "dense_std": self.dense_std,
            "vocab": self.vocab,
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CtrFeaturizer:
        if canonical(str(d.get("kind"))) != KIND:
            raise ValueError(f"pre-processing state has kind {d.get('kind')!r}, expected {KIND!r}")
        return cls(
            dense_columns=list(d["dense_columns"]),
            categorical_columns=list(d["categorical_columns"]),
            min_freq=int(d["min_freq"]),
            dense_mean=[float(x) for x in d["dense_mean"]],
            dense_std=[float(x) for x in d["dense_std"]],
            vocab={k: list(v) for k, v in d["vocab"].items()},
        )

    @classmethod
    def load(cls, path: Path) -> CtrFeaturizer:
        return cls.from_dict(json.loads(path.read_text()))
