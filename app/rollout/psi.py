"""Population stability index (PSI) of a live histogram against a reference one.

PSI = sum over bins of (live - reference) * ln(live / reference), on proportions; empty bins are floored at
``EPSILON`` so the logarithm stays finite. Usual reading: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25
a significant one (docs/operations.md, "Drift"). The drift libraries on PyPI (evidently, nannyml, alibi-detect)
take raw samples in data frames and pull in pandas and plotting stacks; the service keeps binned counts only, so
this is the formula itself over numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPSILON = 1e-4
"""Floor of a bin's proportion (the common choice: a bin empty on one side adds a bounded, large term)."""
MODERATE = 0.1
SIGNIFICANT = 0.25


def psi(reference: Sequence[float] | np.ndarray, live: Sequence[float] | np.ndarray) -> float:
    """PSI of ``live`` counts (or proportions) against ``reference`` proportions (or counts), bin by bin."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    if ref.shape != cur.shape or ref.ndim != 1 or ref.size < 1:
        raise ValueError(f"psi needs two histograms of the same bins, got shapes {ref.shape} and {cur.shape}")
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("psi needs a non-empty histogram on both sides")
    p = np.maximum(ref / ref.sum(), EPSILON)
    q = np.maximum(cur / cur.sum(), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def level(value: float) -> str:
    """``stable`` / ``moderate`` / ``significant`` by the usual PSI thresholds."""
    return "significant" if value > SIGNIFICANT else "moderate" if value > MODERATE else "stable"
