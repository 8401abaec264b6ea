"""Binning for drift checks: reference distributions built offline and live values put in the same bins.

``compress`` calls :func:`numeric_feature` / :func:`categorical_feature` on the held-out split when it publishes a
version; the service builds a :class:`Binner` per feature from the manifest and calls it on each observed value.
One code path for both sides, so a value lands in the same bin offline and online.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from app.manifest import DriftFeature

NUMERIC_BINS = 10
"""Quantile bins of a numeric value (fewer when values repeat, e.g. counts that are mostly 0)."""
TOP_VALUES = 20
"""Categorical values kept by name; the rest share one ``other`` bin."""
DIGITS = 6
"""Rounding of stored proportions and edges: compact manifests, far below PSI's sensitivity."""


def as_number(value: Any) -> float:
    """A numeric observation, NaN when missing or not a number (both count as missing)."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def as_category(value: Any) -> str | None:
    """A categorical observation's key: ints from JSON and digits from a CSV give the same key; '' is missing."""
    if value is None:
        return None
    text = str(value)
    return text or None


def numeric_feature(
    name: str, values: Iterable[Any], role: Literal["input", "output"], tensor: str | None = None
) -> DriftFeature:
    """Quantile bins of ``values`` (missing ones get their own bin) and the share of values in each."""
    x = np.array([as_number(v) for v in values], dtype=np.float64)
    present = x[~np.isnan(x)]
    edges: list[float] = []
    if present.size:
        qs = np.quantile(present, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1])
        edges = sorted({round(float(q), DIGITS) for q in qs})
    binner = Binner(
        DriftFeature(name=name, role=role, kind="numeric", edges=edges, proportions=[0.0] * (len(edges) + 2))
    )
    return DriftFeature(
        name=name, role=role, kind="numeric", edges=edges, proportions=_shares(binner, x.tolist()), tensor=tensor
    )


def categorical_feature(
    name: str, values: Iterable[Any], role: Literal["input", "output"], tensor: str | None = None
) -> DriftFeature:
    """The ``TOP_VALUES`` most frequent values by name, then ``other`` and missing, and the share of each."""
    keys = [as_category(v) for v in values]
    top = [k for k, _ in Counter(k for k in keys if k is not None).most_common(TOP_VALUES)]
    binner = Binner(
        DriftFeature(name=name, role=role, kind="categorical", values=top, proportions=[0.0] * (len(top) + 2))
    )
    return DriftFeature(
        name=name, role=role, kind="categorical", values=top, proportions=_shares(binner, keys), tensor=tensor
    )


def _shares(binner: Binner, values: Sequence[Any]) -> list[float]:
    counts = np.bincount([binner(v) for v in values], minlength=binner.bins).astype(np.float64)
    total = max(float(counts.sum()), 1.0)
    return [round(float(c) / total, DIGITS) for c in counts]


class Binner:
    """Value -> bin index of one reference feature, in O(log bins) for numbers and O(1) for categories."""

    __slots__ = ("bins", "missing", "_edges", "_index", "_other", "_numeric")

    def __init__(self, feature: DriftFeature) -> None:
        self._numeric = feature.kind == "numeric"
        self._edges = list(feature.edges)
        self._index = {v: i for i, v in enumerate(feature.values)}
        self._other = len(feature.values)
        self.bins = len(feature.proportions)
        self.missing = self.bins - 1

    def __call__(self, value: Any) -> int:
        if self._numeric:
            x = as_number(value)
            return self.missing if x != x else bisect_left(self._edges, x)  # x != x: NaN
        key = as_category(value)
        return self.missing if key is None else self._index.get(key, self._other)
