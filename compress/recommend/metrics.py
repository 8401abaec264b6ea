"""Ranking metrics over top-K id lists (numpy only: ``compress evaluate`` needs no training stack).

recall@K = hits in the top K / min(K, |targets|) (so a perfect list scores 1 even when a customer buys more
than K products); NDCG@K uses binary gains with the same ideal; coverage@10 = share of the catalogue that
appears in at least one test user's top 10.
"""

from __future__ import annotations

import numpy as np


def ranking_metrics(top: np.ndarray, targets: list[np.ndarray], n_items: int) -> dict[str, float]:
    """``top`` [n, >=50] item indices, best first; ``targets`` per row; ``n_items`` without the padding row.

    Vectorised: one ``isin`` over (row, item) keys marks every hit; per-row sums then run over whole rows.
    """
    top = np.asarray(top).astype(np.int64)
    out: dict[str, float] = {}
    disc = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    sizes = np.asarray([len(t) for t in targets], np.int64)
    width = int(max(top.max(initial=0), max((int(t.max()) for t in targets if len(t)), default=0))) + 1
    rows = np.arange(len(top), dtype=np.int64)
    keys = np.repeat(rows, sizes) * width + (np.concatenate(targets).astype(np.int64) if len(targets) else rows[:0])
    hits = np.isin(rows[:, None] * width + top, keys)
    for k in (10, 50):
        if top.shape[1] < k:
            continue
        ideal = np.minimum(k, sizes)
        hit = hits[:, :k]
        out[f"recall@{k}"] = float(np.mean(hit.sum(1) / ideal))
        if k == 10:
            best = np.asarray([disc[:i].sum() for i in range(k + 1)])
            out["ndcg@10"] = float(np.mean((hit * disc[:k]).sum(1) / best[ideal]))
    out["coverage@10"] = float(len(np.unique(top[:, :10])) / max(n_items, 1))
    return out
