"""Comparison of two answers to the same request (a version against its reference), one function per measure.

Tasks pick their measures in :meth:`app.tasks.base.Task.compare`; every result is a :class:`Comparison` whose
``agreement`` (0-1, 1 = the same answer) is what rollout limits and dashboards use, and whose ``measures`` are
exported per name (a fixed, small set per task).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PCTR_TOLERANCE = 0.02
"""Two click-through estimates closer than this (absolute) count as agreeing."""


@dataclass(frozen=True)
class Comparison:
    agreement: float
    """0-1: how far the candidate's answer is the reference's (per task)."""
    measures: dict[str, float] = field(default_factory=dict)


def max_abs_diff(reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> Comparison:
    """Raw tensors: the largest absolute difference over every numeric output both answers have;
    agreement = 1 - that difference (clipped to 0-1), so identical outputs agree fully."""
    worst = 0.0
    for name, ref in reference.items():
        if name.startswith("_") or name not in candidate:
            continue
        a, b = np.asarray(ref), np.asarray(candidate[name])
        if a.shape != b.shape:
            return Comparison(0.0, {"max_abs_diff": float("inf")})
        if a.size and np.issubdtype(a.dtype, np.number) and np.issubdtype(b.dtype, np.number):
            worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
    return Comparison(float(np.clip(1.0 - worst, 0.0, 1.0)), {"max_abs_diff": worst})


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Rank correlation of two score lists over the same candidates (1 = same order); 1.0 below two items."""
    if len(a) < 2:
        return 1.0
    ra = np.argsort(np.argsort(np.asarray(a, np.float64))).astype(np.float64)
    rb = np.argsort(np.argsort(np.asarray(b, np.float64))).astype(np.float64)
    sa, sb = ra.std(), rb.std()
    if sa == 0 or sb == 0:
        return 1.0 if sa == sb else 0.0
    return float(np.mean((ra - ra.mean()) * (rb - rb.mean())) / (sa * sb))


def overlap_at(reference: Sequence[str], candidate: Sequence[str], k: int = 10) -> float:
    """Share of the reference's top ``k`` that the candidate's top ``k`` also holds (1.0 when both are empty)."""
    ref, cand = list(reference[:k]), set(candidate[:k])
    if not ref:
        return 1.0 if not cand else 0.0
    return sum(1 for x in ref if x in cand) / len(ref)


def ndcg_at(reference: Sequence[str], candidate: Sequence[str], k: int = 10) -> float:
    """NDCG@k of the candidate's ranking, the reference's ranking as graded relevance (first = k, then k-1, ...)."""
    gain = {item: float(k - i) for i, item in enumerate(reference[:k])}
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = sum(g * d for g, d in zip(sorted(gain.values(), reverse=True), discounts, strict=False))
    if ideal == 0:
        return 1.0
    got = sum(gain.get(item, 0.0) * d for item, d in zip(candidate[:k], discounts, strict=False))
    return float(got / ideal)
