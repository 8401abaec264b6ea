"""Ranking metrics over graded judgments: NDCG@k (exponential-free, linear gains as ESCI defines them) and MRR."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ndcg_at_k(scores: np.ndarray, gains: np.ndarray, k: int = 10) -> float:
    """NDCG@k of one list: DCG of the top ``k`` by score over the ideal DCG; ties broken by list order.

    A list whose gains are all zero has no ideal ranking: it scores 0 (and is rare; ESCI lists all hold an E).
    """
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")[:k]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((gains[order] * disc[: len(order)]).sum())
    ideal = np.sort(gains)[::-1][:k]
    idcg = float((ideal * disc[: len(ideal)]).sum())
    return dcg / idcg if idcg > 0 else 0.0


def reciprocal_rank(scores: np.ndarray, gains: np.ndarray, relevant_gain: float = 1.0) -> float:
    """1 / rank of the first result with gain >= ``relevant_gain`` (0 when the list has none)."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = np.nonzero(gains[order] >= relevant_gain)[0]
    return 1.0 / (int(hits[0]) + 1) if len(hits) else 0.0


def per_query(
    scores: np.ndarray,
    groups: Sequence[np.ndarray],
    gains: Sequence[np.ndarray],
    k: int = 10,
    relevant_gain: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(NDCG@k, reciprocal rank) per query; ``groups[i]`` are query i's row indices into ``scores``."""
    s = np.asarray(scores, np.float64).reshape(-1)
    nd = np.array([ndcg_at_k(s[g], y, k) for g, y in zip(groups, gains, strict=True)])
    rr = np.array([reciprocal_rank(s[g], y, relevant_gain) for g, y in zip(groups, gains, strict=True)])
    return nd, rr


def ranking_metrics(
    scores: np.ndarray,
    groups: Sequence[np.ndarray],
    gains: Sequence[np.ndarray],
    k: int = 10,
    relevant_gain: float = 1.0,
) -> dict[str, float]:
    """Mean NDCG@k and MRR over queries (every query weighs the same, whatever its list length)."""
    nd, rr = per_query(scores, groups, gains, k, relevant_gain)
    return {f"ndcg_{k}": round(float(nd.mean()), 6), "mrr": round(float(rr.mean()), 6)}
