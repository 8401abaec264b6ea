"""Non-neural baselines on the same temporal split: recent popularity, item-to-item co-occurrence, repeat buying."""

from __future__ import annotations

import numpy as np
import pandas as pd

from compress.recommend.data import Examples, RecSplit
from compress.recommend.metrics import ranking_metrics

K = 50


def popularity(split: RecSplit, before: pd.Timestamp, days: int) -> np.ndarray:
    """Item indices by distinct buyers in the ``days`` before ``before`` (ties: all-time buyers)."""
    n = len(split.items)
    recent = split.baskets(before, before - pd.Timedelta(days=days)).drop_duplicates(["user", "idx"])
    alltime = split.baskets(before).drop_duplicates(["user", "idx"])
    score = np.bincount(recent["idx"], minlength=n) + 1e-6 * np.bincount(alltime["idx"], minlength=n)
    score[0] = -1
    return np.argsort(-score, kind="stable")


def _fill(ranked: list[int], pop: np.ndarray, k: int) -> list[int]:
    seen = set(ranked)
    out = list(ranked[:k])
    for i in pop:
        if len(out) >= k:
            break
        if i not in seen:
            out.append(int(i))
    return out


def repeat(ex: Examples, pop: np.ndarray) -> np.ndarray:
    """The customer's own items by recency-weighted count (position p weighs 0.97^p), then popularity."""
    rows = []
    for h in ex.history:
        score: dict[int, float] = {}
        for p, i in enumerate(h):
            if i:
                score[int(i)] = score.get(int(i), 0.0) + 0.97**p
        rows.append(_fill(sorted(score, key=lambda i: -score[i]), pop, K))
    return np.asarray(rows)


def cooccurrence(split: RecSplit, before: pd.Timestamp, ex: Examples, pop: np.ndarray) -> np.ndarray:
    """Sum over history items (recency-weighted) of basket co-occurrence counts, cosine-normalised."""
    from scipy import sparse

    n = len(split.items)
    b = split.baskets(before)
    codes = b["basket"].astype("category").cat.codes.to_numpy()
    m = sparse.csr_matrix((np.ones(len(b), np.float32), (codes, b["idx"].to_numpy())), shape=(codes.max() + 1, n))
    co = (m.T @ m).tocsr()
    co.setdiag(0)
    norm = np.sqrt(np.asarray(m.sum(0)).ravel()) + 1.0
    rows = []
    for h in ex.history:
        valid = h[h > 0]
        w = 0.97 ** np.arange(len(valid))
        s = np.asarray(co[valid].T @ (w / norm[valid])).ravel() / norm
        s[0] = -np.inf
        rows.append(list(np.argsort(-s, kind="stable")[:K]))
    return np.asarray(rows)


def all_baselines(split: RecSplit, ex: Examples, before: pd.Timestamp, days: int) -> dict[str, dict[str, float]]:
    pop = popularity(split, before, days)
    n = len(split.items) - 1
    top_pop = np.tile(pop[:K], (len(ex), 1))
    return {
        "popularity": ranking_metrics(top_pop, ex.targets, n),
        "cooccurrence": ranking_metrics(cooccurrence(split, before, ex, pop), ex.targets, n),
        "repeat": ranking_metrics(repeat(ex, pop), ex.targets, n),
    }
