"""Non-neural baselines on the same split and users: recent popularity, item-to-item basket co-occurrence,
item-kNN (cosine over users), repeat buying. With ``exclude_seen`` every list skips what the user already has."""

from __future__ import annotations

import numpy as np
import pandas as pd

from compress.recommend.data import Cut, Examples, RecSplit
from compress.recommend.metrics import ranking_metrics

K = 50


def popularity(split: RecSplit, before: Cut, days: int) -> np.ndarray:
    """Item indices by distinct buyers in the ``days`` before ``before`` (ties: all-time buyers)."""
    n = len(split.items)
    start = split.start(before)
    recent = split.baskets(before, start - pd.Timedelta(days=days)).drop_duplicates(["user", "idx"])
    alltime = split.baskets(before).drop_duplicates(["user", "idx"])
    score = np.bincount(recent["idx"], minlength=n) + 1e-6 * np.bincount(alltime["idx"], minlength=n)
    score[0] = -1
    return np.argsort(-score, kind="stable")


def _fill(ranked: list[int], pop: np.ndarray, k: int, skip: np.ndarray | None = None) -> list[int]:
    banned = set() if skip is None else set(skip.tolist())
    out = [i for i in ranked if i not in banned][:k]
    taken = set(out) | banned
    for i in pop:
        if len(out) >= k:
            break
        if int(i) not in taken:
            out.append(int(i))
    return out


def _seen(ex: Examples, exclude_seen: bool) -> list[np.ndarray | None]:
    return list(ex.seen) if exclude_seen and ex.seen else [None] * len(ex)


def _top(scores: np.ndarray, skip: np.ndarray | None) -> list[int]:
    scores[0] = -np.inf
    if skip is not None and len(skip):
        scores[skip] = -np.inf
    top: list[int] = np.argsort(-scores, kind="stable")[:K].tolist()
    return top


def repeat(ex: Examples, pop: np.ndarray, exclude_seen: bool = False) -> np.ndarray:
    """The customer's own items by recency-weighted count (position p weighs 0.97^p), then popularity."""
    rows = []
    for h, skip in zip(ex.history, _seen(ex, exclude_seen), strict=True):
        score: dict[int, float] = {}
        for p, i in enumerate(h):
            if i:
                score[int(i)] = score.get(int(i), 0.0) + 0.97**p
        rows.append(_fill(sorted(score, key=lambda i: -score[i]), pop, K, skip))
    return np.asarray(rows)


def cooccurrence(split: RecSplit, before: Cut, ex: Examples, pop: np.ndarray, exclude_seen: bool = False) -> np.ndarray:
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
    for h, skip in zip(ex.history, _seen(ex, exclude_seen), strict=True):
        valid = h[h > 0]
        w = 0.97 ** np.arange(len(valid))
        s = np.asarray(co[valid].T @ (w / norm[valid])).ravel() / norm
        rows.append(_fill(_top(s, skip), pop, K, skip))
    return np.asarray(rows)


def item_knn(split: RecSplit, before: Cut, ex: Examples, pop: np.ndarray, exclude_seen: bool = False) -> np.ndarray:
    """Item-kNN: an item scores the sum of its cosine similarities (over the users who have both) with every
    item of the user's whole history before ``before``. Computed as ``x D^-1/2 X^T X D^-1/2`` per block of
    users, so the item x item matrix is never built."""
    from scipy import sparse

    n = len(split.items)
    b = split.baskets(before).drop_duplicates(["user", "idx"])
    codes, users = pd.factorize(b["user"], sort=False)
    x = sparse.csr_matrix((np.ones(len(b), np.float32), (codes, b["idx"].to_numpy())), shape=(len(users), n))
    inv = 1.0 / np.sqrt(np.maximum(np.asarray(x.sum(0)).ravel(), 1.0))
    xn = (x @ sparse.diags(inv)).tocsr()
    row_of = {str(u): i for i, u in enumerate(users)}
    rows: list[list[int]] = []
    skips = _seen(ex, exclude_seen)
    for a in range(0, len(ex), 256):
        q = []
        for j in range(a, min(a + 256, len(ex))):
            r = row_of.get(ex.users[j]) if ex.users else None
            h = ex.history[j]
            q.append(x[r].toarray().ravel() if r is not None else np.bincount(h[h > 0], minlength=n).clip(0, 1))
        qd = np.asarray(q, np.float32)
        s = np.asarray(((sparse.csr_matrix(qd * inv) @ xn.T) @ xn).todense()) - qd  # minus self-similarity
        for j, srow in enumerate(s):
            skip = skips[a + j]
            rows.append(_fill(_top(srow.astype(np.float64), skip), pop, K, skip))
    return np.asarray(rows)


def all_baselines(
    split: RecSplit, ex: Examples, before: Cut, days: int, exclude_seen: bool = False
) -> dict[str, dict[str, float]]:
    pop = popularity(split, before, days)
    n = len(split.items) - 1
    skips = _seen(ex, exclude_seen)
    top_pop = (
        np.asarray([_fill([], pop, K, skip) for skip in skips]) if exclude_seen else np.tile(pop[:K], (len(ex), 1))
    )
    return {
        "popularity": ranking_metrics(top_pop, ex.targets, n),
        "cooccurrence": ranking_metrics(cooccurrence(split, before, ex, pop, exclude_seen), ex.targets, n),
        "item_knn": ranking_metrics(item_knn(split, before, ex, pop, exclude_seen), ex.targets, n),
        "repeat": ranking_metrics(repeat(ex, pop, exclude_seen), ex.targets, n),
    }
