"""The bars every ranker is reported beside: BM25 over the product text and zero-shot MiniLM cosine.

Both score exactly the judged lists of the given queries (the same rows as the models), so the numbers compare.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.tasks.search.text import product_text
from compress.search.metrics import per_query, ranking_metrics

if TYPE_CHECKING:
    from compress.search.task import SearchTask


def bm25_lists(task: SearchTask, queries: list[int]) -> list[np.ndarray]:
    """BM25 scores per query list (IDF over every catalogue product)."""
    from compress.search.train import bm25_scores

    d = task.data
    cached = getattr(task, "_bm25_corpus", None)
    corpus = cached or {p: product_text(d.catalogue[p], task.cfg.data.text_fields) for p in task.product_ids}
    task._bm25_corpus = corpus  # type: ignore[attr-defined]
    return bm25_scores(corpus, [d.lists[q].query for q in queries], [d.lists[q].products for q in queries])


def minilm_lists(task: SearchTask, queries: list[int]) -> list[np.ndarray]:
    """Cosine of all-MiniLM-L6-v2 query and product embeddings (product text cut to the pair limit)."""
    return minilm_both(task, queries)[0]


def minilm_both(task: SearchTask, queries: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(FP32 cosine, the served bi-encoder's score: query . row-wise INT8 product vector) per query list."""
    from app.tasks.search.text import dot_scores, quantize_rows
    from compress.minilm.model import load_teacher
    from compress.minilm.run import torch_threads
    from compress.search.train import embed, single_seqs

    d, r = task.data, task.cfg.rank
    products = sorted({p for q in queries for p in d.lists[q].products})
    with torch_threads(task.cfg.train.threads):
        enc = load_teacher(task.weights, 1)
        p_emb = embed(enc, single_seqs([task.product_tokens[p] for p in products], r.max_tokens))
        q_emb = embed(enc, single_seqs([task.query_tokens[q] for q in queries], r.max_tokens))
    row = {p: i for i, p in enumerate(products)}
    at = [[row[p] for p in d.lists[q].products] for q in queries]
    q8, scale = quantize_rows(p_emb)
    return (
        [p_emb[a] @ q_emb[i] for i, a in enumerate(at)],
        [dot_scores(q_emb[i], q8[a], scale[a]) for i, a in enumerate(at)],
    )


def onnx_bi_lists(task: SearchTask, queries: list[int], model_path: Path) -> list[np.ndarray]:
    """A bi-encoder ONNX candidate's scores as served: its query vector . its own row-wise INT8 product vectors."""
    from app.tasks.search.text import dot_scores, pad_pairs, quantize_rows, single_seq
    from compress.evaluate import session

    d = task.data
    products = sorted({p for q in queries for p in d.lists[q].products})
    seqs = [single_seq(task.query_tokens[q]) for q in queries] + [single_seq(task.product_tokens[p]) for p in products]
    ids, mask = pad_pairs(seqs)
    sess = session(model_path, threads=task.cfg.train.threads)
    vec = np.asarray(task.predict(sess, {"input_ids": ids, "attention_mask": mask}, task.outputs[0].name), np.float32)
    q_emb, (q8, scale) = vec[: len(queries)], quantize_rows(vec[len(queries) :])
    row = {p: i for i, p in enumerate(products)}
    at = [[row[p] for p in d.lists[q].products] for q in queries]
    return [dot_scores(q_emb[i], q8[a], scale[a]) for i, a in enumerate(at)]


def _metrics(task: SearchTask, queries: list[int], scores: list[np.ndarray]) -> dict[str, float]:
    groups, flat, start = [], [], 0
    for s in scores:
        groups.append(np.arange(start, start + len(s)))
        flat.append(s)
        start += len(s)
    gains = [task.data.lists[q].gains for q in queries]
    return ranking_metrics(np.concatenate(flat), groups, gains, task.cfg.rank.ndcg_k, task.cfg.data.relevant_gain)


def bm25_metrics(task: SearchTask, queries: list[int]) -> dict[str, float]:
    return _metrics(task, queries, bm25_lists(task, queries))


def minilm_metrics(task: SearchTask, queries: list[int]) -> dict[str, float]:
    return _metrics(task, queries, minilm_lists(task, queries))


def per_query_ndcg(task: SearchTask, queries: list[int], scores: list[np.ndarray]) -> np.ndarray:
    """NDCG@k of each query's list (for fold statistics)."""
    groups, start = [], 0
    for s in scores:
        groups.append(np.arange(start, start + len(s)))
        start += len(s)
    nd, _ = per_query(
        np.concatenate(scores),
        groups,
        [task.data.lists[q].gains for q in queries],
        task.cfg.rank.ndcg_k,
        task.cfg.data.relevant_gain,
    )
    return nd
