"""ANN retrieval core at 10^5 SYNTHETIC items: exact ``k`` under exclusions, recall vs exact, bounded time."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from app.tasks.recommend.retrieval import AnnRetrieval, ItemTable, augment
from compress.recommend.ann import build_index

N, D, B, K = 100_000, 32, 32, 100


def _catalogue() -> tuple[np.ndarray, ItemTable, np.ndarray]:
    """Clustered SYNTHETIC item vectors (500 centres + noise) and users near random items."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((500, D)).astype(np.float32)
    v = centres[rng.integers(0, 500, N)] + 0.3 * rng.standard_normal((N, D)).astype(np.float32)
    vectors = augment(v, np.zeros(N, np.float32))
    users = np.zeros((B, vectors.shape[1]), np.float32)
    users[:, :D] = v[rng.integers(1, N, B)] + 0.1 * rng.standard_normal((B, D)).astype(np.float32)
    users[:, D] = 1.0
    return vectors, ItemTable.quantize(vectors, np.zeros(N, np.float32)), users


def test_ivf_pq_fastscan_at_1e5_items_returns_exactly_k_and_keeps_recall() -> None:
    vectors, table, users = _catalogue()
    r = SimpleNamespace(ann_nlist=0, ann_nprobe=16, ann_pq_dims=2, hnsw_m=32, hnsw_ef_search=128, shortlist=256)
    t0 = time.perf_counter()
    index, params = build_index("ivf_pq_fastscan", vectors, r, seed=0)
    build_s = time.perf_counter() - t0
    retr = AnnRetrieval(index, table, 256)
    hist = np.zeros((B, 8), np.int64)
    exact = np.argsort(-(table.qweight.astype(np.float32) @ users.T).T * table.scale, axis=1)[:, :K]
    exact[:, :] = np.where(exact == 0, -1, exact)  # id 0 is padding, never returned
    excl = exact[:, :50].copy()  # exclude half of every row's exact top 100
    t0 = time.perf_counter()
    ids, scores = retr.search(users, np.zeros_like(hist, np.float32), hist, excl, K)
    search_ms = (time.perf_counter() - t0) * 1e3
    assert ids.shape == (B, K) and (ids > 0).all(), f"every row holds {K} real items: {(ids > 0).sum(1)}"
    assert all(len(set(row)) == K for row in ids.tolist()), "no duplicates"
    assert not any(set(a) & set(e) for a, e in zip(ids.tolist(), excl.tolist(), strict=True)), "exclusions leaked"
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "scores sorted best first"
    plain, _ = retr.search(users, np.zeros_like(hist, np.float32), hist, np.zeros((B, 1), np.int64), 10)
    recall = np.mean([len(set(a) & set(e[:10])) / 10 for a, e in zip(plain.tolist(), exact.tolist(), strict=True)])
    assert recall >= 0.9, f"recall@10 vs exact INT8 scan {recall:.3f} (params {params})"
    assert build_s < 120 and search_ms < 5000, f"build {build_s:.1f} s, one batch of {B} {search_ms:.0f} ms"
