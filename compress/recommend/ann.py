"""ANN retrieval candidates: the user tower in ONNX, a faiss index over the item vectors, INT8 exact re-scoring.

Why a candidate family and not a graph step: the index search cannot live in the ONNX graph, so each ANN kind
is built, evaluated on the real test customers, gated against the FP32 graph and timed end to end (user tower +
search + re-scoring) here, then listed in the report like every other candidate (selected or not). The serving
side is :mod:`app.tasks.recommend.retrieval`, used here too, so what is gated is what is served.

Kinds (faiss ``index_factory`` strings, inner-product metric over ``[v_i, bias_i]``):

* ``ivf_flat`` — ``IVF{nlist},Flat``: ``nprobe`` lists scanned exactly (fp32 vectors);
* ``ivf_pq_fastscan`` — ``IVF{nlist},PQ{M}x4fs``: 4-bit PQ codes scanned with SIMD lookup tables (a few bytes
  per item), the shortlist re-scored by the INT8 table;
* ``hnsw`` — ``HNSW{M},Flat``: a proximity graph (fp32 vectors + links), no training;
* ``exact`` — ``Flat``: every item scored (fp32 BLAS), the same re-scoring: the reference of the scale benchmark
  and of catalogue snapshots, not a candidate.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.manifest import TensorSpec
from app.tasks.recommend.retrieval import INDEX_ROLE, ITEMS_ROLE, AnnRetrieval, ItemTable, apply_params, augment
from compress.candidates import Candidate
from compress.gate import check

log = logging.getLogger("compress")
INDEX_FILE, ITEMS_FILE = "ann.faiss", "ann_items.npz"


def tower_io(history_len: int, width: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    return (
        [TensorSpec(name="history", dtype="INT64", shape=[-1, history_len])],
        [
            TensorSpec(name="user", dtype="FP32", shape=[-1, width]),
            TensorSpec(name="repeat", dtype="FP32", shape=[-1, history_len]),
        ],
    )


def user_tower(model: Any, width: int) -> Any:
    """``history -> (user [B, width], repeat [B, L])``: the model's user vector with a 1 for the bias column, and
    the repeat term's per-position weight (the item side of both lives in the index and the INT8 table)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class UserTower(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            u = self.m.user(hist)
            aug = F.pad(torch.cat([u, torch.ones_like(u[:, :1])], 1), (0, width - u.shape[1] - 1))
            rep = F.softplus(self.m.rep_pos).view(1, -1) * (hist > 0).float()
            return aug, rep

    return UserTower().eval()


def item_side(model: Any) -> tuple[np.ndarray, ItemTable]:
    """Augmented fp32 item vectors (index input) and the INT8 re-scoring table of a trained ``TwoTower``."""
    import torch

    from compress.recommend.model import table_weight

    with torch.no_grad():
        bias = model.bias.detach().numpy().copy()
        bias[0] = 0.0  # padding row: never returned (id 0 is dropped), kept out of the INT8 scale
        vectors = augment(table_weight(model).numpy(), bias)
        repeat_item = torch.nn.functional.softplus(model.rep_item).detach().numpy()
    return vectors, ItemTable.quantize(vectors, repeat_item)


def index_spec(kind: str, n: int, width: int, r: Any) -> tuple[str, dict[str, Any]]:
    """The factory string and the search-time parameters of one kind for ``n`` items."""
    nlist = r.ann_nlist or max(1, round(math.sqrt(n)))
    if kind == "exact":
        return "Flat", {}
    if kind == "ivf_flat":
        return f"IVF{nlist},Flat", {"nlist": nlist, "nprobe": min(r.ann_nprobe, nlist)}
    if kind == "ivf_pq_fastscan":
        m = max(1, width // r.ann_pq_dims)
        return f"IVF{nlist},PQ{m}x4fs", {"nlist": nlist, "nprobe": min(r.ann_nprobe, nlist), "pq_codes": m}
    if kind == "hnsw":
        return f"HNSW{r.hnsw_m},Flat", {"hnsw_m": r.hnsw_m, "ef_search": r.hnsw_ef_search, "ef_construction": 64}
    raise ValueError(f"unknown ANN kind {kind!r}")


def build_index(
    kind: str, vectors: np.ndarray, r: Any, seed: int, train_rows: int = 65536
) -> tuple[Any, dict[str, Any]]:
    """Train (on a sample of 64 rows per IVF list, at most ``train_rows``: k-means needs no more) and fill one
    index; returns it with its recipe parameters."""
    import faiss  # type: ignore[import-not-found,unused-ignore]

    factory, params = index_spec(kind, len(vectors), vectors.shape[1], r)
    train_rows = min(train_rows, max(10_000, 64 * int(params.get("nlist", 0))))
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        hnsw: Any = faiss.downcast_index(index)
        hnsw.hnsw.efConstruction = params["ef_construction"]
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = vectors[rng.choice(len(vectors), size=min(train_rows, len(vectors)), replace=False)]
        index.train(sample)
    index.add(vectors)
    apply_params(index, params)
    return index, {"factory": factory, "metric": "inner product", **params, "shortlist": r.shortlist}


def retrieve(
    sess: Any, retr: AnnRetrieval, history: np.ndarray, k: int, chunk: int = 512, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Top-``k`` ids per row through the served path (ONNX user tower, index search, re-scoring, exclusions)."""
    out = []
    if exclude is None:
        exclude = np.zeros((len(history), 1), np.int64)
    for a in range(0, len(history), chunk):
        h = history[a : a + chunk]
        user, rep = sess.run(["user", "repeat"], {"history": h})
        ids, _ = retr.search(user, rep, h, exclude[a : a + chunk], k)
        out.append(ids)
    return np.concatenate(out)


def overlap_at_10(ids: np.ndarray, exact: np.ndarray) -> float:
    return float(
        np.mean([len(set(a[:10]) & set(e[:10])) / 10 for a, e in zip(ids.tolist(), exact.tolist(), strict=True)])
    )


def _time(fn: Any, repeats: int, rounds: int = 5) -> tuple[float, float, float]:
    fn()
    per_round = max(1, repeats // rounds)
    medians = []
    for _ in range(rounds):
        times = []
        for _ in range(per_round):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        medians.append(statistics.median(times))
    return statistics.median(medians), min(medians), max(medians)


def build_candidates(task: Any, builder: Any, reference: Candidate) -> list[Candidate]:
    """Every ``[retrieval].ann`` kind, built over the trained FP32 model, gated against ``reference``."""
    cfg = task.cfg
    r = cfg.retrieval
    if not r.ann:
        return []
    import onnxruntime  # noqa: F401  (a clear ImportError before any work)

    from app.tasks.recommend.retrieval import set_threads
    from compress.evaluate import session
    from compress.onnx_tools import export_torch
    from compress.recommend.model import with_tables
    from compress.tasks import task_latency_feeds, task_predict

    work: Path = builder.workdir
    feeds = builder.test_feeds
    vectors, table = item_side(task.fp32)
    width = vectors.shape[1]
    io = tower_io(cfg.train.history_len, width)
    tower_model, notes = with_tables(task.fp32, "int8")  # the history embedding row-wise INT8, as table_int8
    tower_path = work / "ann-user-tower.onnx"
    export_torch(user_tower(tower_model, width), {"history": feeds["history"]}, io[0], io[1], tower_path)
    items_path = work / ITEMS_FILE
    table.save(items_path)
    assert reference.path is not None, "the FP32 reference is built first"
    exact = task_predict(task, session(reference.path, threads=2), feeds, "item_ids").astype(np.int64)
    sess = session(tower_path, threads=cfg.latency.threads)
    batches = task_latency_feeds(task, feeds, cfg.latency.batch_sizes)
    out = []
    for kind in r.ann:
        name = f"ann_{kind}"
        try:
            set_threads(2)
            t0 = time.perf_counter()
            index, params = build_index(kind, vectors, r, cfg.train.seed)
            build_s = time.perf_counter() - t0
            kdir = work / name
            kdir.mkdir(exist_ok=True)
            index_path = kdir / INDEX_FILE
            import faiss

            faiss.write_index(index, str(index_path))
            retr = AnnRetrieval(index, table, r.shortlist)
            set_threads(1)
            ids = retrieve(sess, retr, feeds["history"], r.top_k)
            metrics = task.metrics(ids, "test")
            metrics["overlap@10"] = overlap_at_10(ids, exact)
            gate = check(metrics, builder.reference, cfg.gate.rules)
            lat = {
                str(b): _time(lambda x=x, rt=retr: retrieve(sess, rt, x["history"], r.top_k), cfg.latency.repeats)
                for b, x in batches.items()
            }
        except Exception as e:  # noqa: BLE001 - one kind failing (faiss refuses a shape) must not end the run
            log.warning("candidate %s failed: %s", name, e)
            out.append(Candidate(name, status="error", error=str(e)))
            continue
        items_bytes = items_path.stat().st_size
        cand = Candidate(
            name,
            status="passed" if gate.passed else "failed",
            path=tower_path,
            bytes=tower_path.stat().st_size + index_path.stat().st_size + items_bytes,
            metrics=metrics,
            latency={b: v[0] for b, v in lat.items()},
            latency_range={b: (v[1], v[2]) for b, v in lat.items()},
            gate=gate,
            recipe={
                "steps": [name],
                "retrieval": kind,
                "index": {**params, "bytes": index_path.stat().st_size, "build_s": round(build_s, 3)},
                "rescoring": {"table": "row-wise int8 [v, bias], fp16 scale", "bytes": items_bytes},
                "user_tower": {"history_embedding": notes.get("history_embedding", "int8"), "outputs": "user, repeat"},
                "latency_note": "end to end: ONNX user tower + index search + INT8 re-scoring, timed by this step",
            },
            files={INDEX_ROLE: index_path, ITEMS_ROLE: items_path},
            io=io,
        )
        log.info("candidate %s: %s, overlap@10 %.3f, %s", name, cand.status, metrics["overlap@10"], gate.reason)
        out.append(cand)
    return out
