"""Ranking metrics over top-K id lists (numpy only: ``compress evaluate`` needs no training stack).

recall@K = hits in the top K / min(K, |targets|) (so a perfect list scores 1 even when a customer buys more
than K products); NDCG@K uses binary gains with the same ideal; coverage@10 = share of the catalogue that
appears in at least one test user's top 10.
"""

from __future__ import annotations

import numpy as np


def ranking_metrics(top: np.ndarray, targets: list[np.ndarray], n_items: int) -> dict[str, float]:
    """``top`` [n, >=50] item indices, best first; ``targets`` per row; ``n_items`` without the padding row."""
    top = np.asarray(top).astype(np.int64)
    out: dict[str, float] = {}
    disc = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    for k in (10, 50):
        if top.shape[1] < k:
            continue
        rec, ndcg = [], []
        for row, t in zip(top[:, :k], targets, strict=True):
            hit = np.isin(row, t)
            ideal = min(k, len(t))
            rec.append(hit.sum() / ideal)
            ndcg.append(float((hit * disc[:k]).sum() / disc[:ideal].sum()))
        out[f"recall@{k}"] = float(np.mean(rec))
        if k == 10:
            out["ndcg@10"] = float(np.mean(ndcg))
    out["coverage@10"] = float(len(np.unique(top[:, :10])) / max(n_items, 1))
    return out
