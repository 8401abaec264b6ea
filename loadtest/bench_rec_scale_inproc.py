"""SYNTHETIC 1M-item catalogue: top-K retrieval latency and memory of each recommendation candidate kind.

Nothing here is data and nothing here measures recommendation quality. The item table and the history
embedding are random vectors (a Gaussian mixture of 1,000 "categories", so that PQ and graph indexes see some
structure), the customers random 20-item histories; the model has the published config's shapes
(``compress/configs/recommend.toml``: dim, hidden, history length, top-K, PQ shape, shortlist) and its repeat
term switched off. Only latency and memory mean anything; the "overlap@10" column says how much of the exact
top 10 an approximate method returns *on these synthetic vectors* (a sanity check, not a recall).

Rows:

* the ONNX graphs the pipeline builds, exported from ``compress.recommend.model`` exactly as ``compress run`` does:
  ``fp32`` (Einsum + TopK), ``table_fp16``, ``table_int8`` (row-wise INT8 + fp16 scale), ``table_int8+pq``
  (PQ shortlist in the graph, exact re-scoring of ``shortlist`` rows);
* faiss (``pip install faiss-cpu``, the ``loadtest`` extra), fed the user vector of the same model: exact
  ``IndexFlatIP``; ``IndexPQ`` with the config's PQ shape and ``IndexPQFastScan`` (16 x 4 bit) each re-scoring
  a ``shortlist`` exactly with the INT8 table; ``IndexHNSWFlat`` (M=32, efSearch=128), an ANN graph index.

Each candidate is timed in its own subprocess (1 thread, as ``[latency] threads = 1``) so "RSS added" is that
process's peak resident memory minus its memory before loading the file. Build times use 2 threads.

    python -m loadtest.bench_rec_scale_inproc                       # 1,000,000 items (retrieval.scale_items), ~10 min
    python -m loadtest.bench_rec_scale_inproc --items 100000 --seconds 2 --no-hnsw
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compress.config import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "compress" / "configs" / "recommend.toml"
BATCHES = (1, 32)
HISTORY_ITEMS = 20
CATEGORIES = 1000


@dataclass
class Built:
    """One candidate on disk: what the timing subprocess loads, and what it cost to build."""

    name: str
    kind: str  # onnx | faiss | faiss_rescore
    path: Path
    stored_bytes: int
    build_s: float
    notes: str = ""
    timing: dict[str, Any] = field(default_factory=dict)


def synthetic_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` x ``dim`` float32 rows: a category centre plus noise. SYNTHETIC."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CATEGORIES, dim), dtype=np.float32) / np.sqrt(dim)
    out = np.empty((n, dim), np.float32)
    step = 1 << 17
    for a in range(0, n, step):
        b = min(n, a + step)
        out[a:b] = centres[rng.integers(0, CATEGORIES, b - a)]
        out[a:b] += 0.5 * rng.standard_normal((b - a, dim), dtype=np.float32) / np.sqrt(dim)
    return out


def synthetic_model(cfg: Any, n: int, seed: int) -> Any:
    """A ``TwoTower`` of the config's shapes over ``n`` SYNTHETIC items (repeat term off, zero bias)."""
    import torch

    from compress.recommend.model import Fp32Table, TwoTower

    t = cfg.train
    torch.manual_seed(seed)
    model = TwoTower(2, t.dim, t.hidden, t.history_len, cfg.retrieval.top_k)  # small, then the real tables
    model.inp = torch.nn.Embedding(n, t.dim, padding_idx=0, _weight=torch.from_numpy(synthetic_vectors(n, t.dim, seed)))
    model.table = Fp32Table(torch.from_numpy(synthetic_vectors(n, t.dim, seed + 1)))
    model.bias = torch.nn.Parameter(torch.zeros(n))
    model.rep_item = torch.nn.Parameter(torch.full((n,), -30.0))  # softplus(-30) ~ 1e-13: no repeat boost
    mask = torch.zeros(n)
    mask[0] = -1e9
    model.pad_mask = mask
    return model.eval()


def pq_at_scale(weight: np.ndarray, m: int, c: int, seed: int, sample: int = 16384) -> Any:
    """``compress.recommend.model.PQIndex`` with codebooks fitted on a sample (its own k-means) and every row coded.

    The class's k-means over all rows would need ~n x c x dim floats per step; the code assignment is the same
    nearest-centroid rule, done in chunks.
    """
    import torch

    from compress.recommend.model import PQIndex

    rng = np.random.default_rng(seed)
    fit = weight[rng.choice(len(weight), size=min(sample, len(weight)), replace=False)]
    pq = PQIndex(torch.from_numpy(fit), m, c, seed, iters=10)
    books = pq.books.numpy()  # [m, c, d/m]
    sub = weight.reshape(len(weight), m, -1)
    codes = np.empty((len(weight), m), np.uint8)
    norms = (books**2).sum(-1)  # [m, c]
    for a in range(0, len(weight), 1 << 14):
        x = sub[a : a + (1 << 14)]
        codes[a : a + len(x)] = (norms[None] - 2 * np.einsum("nmd,mcd->nmc", x, books)).argmin(-1)
    pq.codes = torch.from_numpy(codes)
    pq.n = len(weight)
    return pq


def build_onnx(cfg: Any, model: Any, feeds: dict[str, np.ndarray], work: Path) -> list[Built]:
    """The pipeline's own transforms and exporter (``compress.onnx_tools.export_torch``) at catalogue scale."""
    import copy

    from compress.onnx_tools import export_torch
    from compress.recommend.model import table_weight, with_tables
    from compress.recommend.task import RecTask

    task = RecTask(cfg)
    r = cfg.retrieval
    out = []

    def export(name: str, m: Any, t0: float, notes: str) -> None:
        path = work / f"{name.replace('+', '__')}.onnx"
        export_torch(m, feeds, task.inputs, task.outputs, path)
        out.append(Built(name, "onnx", path, path.stat().st_size, time.perf_counter() - t0, notes))
        print(f"  built {name}: {path.stat().st_size / 2**20:,.0f} MiB", file=sys.stderr)

    t0 = time.perf_counter()
    export("fp32", model, t0, "Einsum + TopK over the fp32 table")
    t0 = time.perf_counter()
    path = work / "fp32_matmul.onnx"
    matmul_layout(out[0].path, path)
    out.append(
        Built(
            "fp32, table stored [D, N] (MatMul)",
            "onnx",
            path,
            path.stat().st_size,
            time.perf_counter() - t0,
            "the fp32 graph with its Einsum rewritten as MatMul (not published)",
        )
    )
    t0 = time.perf_counter()
    fp16, _ = with_tables(model, "fp16")
    export("table_fp16", fp16, t0, "fp16 table, CastLike to fp32 per call")
    del fp16
    t0 = time.perf_counter()
    int8, _ = with_tables(model, "int8")
    export("table_int8", int8, t0, "row-wise int8 table + history embedding, fp16 scales")
    t0 = time.perf_counter()
    pq_model = copy.deepcopy(int8)
    pq_model.pq = pq_at_scale(table_weight(model).numpy(), r.pq_subspaces, r.pq_centroids, cfg.train.seed)
    pq_model.shortlist = r.shortlist
    export(
        "table_int8+pq",
        pq_model,
        t0,
        f"PQ {r.pq_subspaces}x{r.pq_centroids} Gather-sum in the graph, exact re-scoring of {r.shortlist}",
    )
    gc.collect()
    return out


def matmul_layout(src: Path, dst: Path) -> None:
    """``Einsum('bd,nd->bn', u, table)`` -> ``MatMul(u, table^T)`` with the table stored transposed.

    ORT's Einsum copies the [N, D] table into the layout its MatMul needs on every call; at 1M rows that copy,
    not the arithmetic, dominates. Same model, same scores (up to summation order).
    """
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    inits = {i.name: i for i in m.graph.initializer}
    for node in m.graph.node:
        eq = next((a.s.decode() for a in node.attribute if a.name == "equation"), "")
        if node.op_type == "Einsum" and eq.replace(" ", "") == "bd,nd->bn" and node.input[1] in inits:
            w = inits[node.input[1]]
            w.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(w).T), w.name))
            node.op_type = "MatMul"
            del node.attribute[:]
    onnx.save(m, str(dst))


def build_faiss(cfg: Any, vectors: np.ndarray, work: Path, hnsw: bool) -> list[Built]:
    """faiss indexes over the same table; the re-scoring ones store the row-wise INT8 table beside the codes."""
    import faiss  # type: ignore[import-not-found,unused-ignore]

    faiss.omp_set_num_threads(2)
    r, d = cfg.retrieval, vectors.shape[1]
    rng = np.random.default_rng(cfg.train.seed)
    train = vectors[rng.choice(len(vectors), size=min(65536, len(vectors)), replace=False)]
    scale = np.maximum(np.abs(vectors).max(1, keepdims=True) / 127.0, 1e-8).astype(np.float16)
    qweight = np.clip(np.round(vectors / scale.astype(np.float32)), -127, 127).astype(np.int8)
    table = work / "int8_table.npz"
    np.savez(table, qweight=qweight, scale=scale)
    table_bytes = qweight.nbytes + scale.nbytes
    ip = faiss.METRIC_INNER_PRODUCT
    specs: list[tuple[str, str, Any, str]] = [
        ("faiss flat (exact)", "faiss", faiss.IndexFlatIP(d), "exact inner product, fp32 (BLAS)"),
        (
            f"faiss PQ {r.pq_subspaces}x8bit + re-score",
            "faiss_rescore",
            faiss.IndexPQ(d, r.pq_subspaces, 8, ip),
            f"ADC scan, {r.shortlist} re-scored with the int8 table",
        ),
        (
            "faiss PQ fast-scan 16x4bit + re-score",
            "faiss_rescore",
            faiss.IndexPQFastScan(d, 16, 4, ip),
            f"SIMD 4-bit ADC, {r.shortlist} re-scored with the int8 table",
        ),
    ]
    if hnsw:
        index = faiss.IndexHNSWFlat(d, 32, ip)
        index.hnsw.efConstruction = 64
        specs.append(("faiss HNSW flat (ANN)", "faiss", index, "M=32, efConstruction=64, efSearch=128, fp32 vectors"))
    out = []
    for name, kind, index, notes in specs:
        t0 = time.perf_counter()
        if not index.is_trained:
            index.train(train)
        index.add(vectors)
        path = work / (name.split(" (")[0].replace(" ", "_").replace("+", "") + ".faiss")
        faiss.write_index(index, str(path))
        size = path.stat().st_size + (table_bytes if kind == "faiss_rescore" else 0)
        out.append(Built(name, kind, path, size, time.perf_counter() - t0, notes))
        print(f"  built {name}: {size / 2**20:,.0f} MiB in {out[-1].build_s:.0f}s", file=sys.stderr)
        del index
    return out


# ---- the timing subprocess ----
def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def _timed(fn: Any, seconds: float, min_calls: int = 5) -> tuple[list[float], Any]:
    out = fn()  # warm-up (arena growth, page-in)
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < end:
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1e3)
    return times, out


def time_one(kind: str, path: Path, feeds_path: Path, shortlist: int, top_k: int, seconds: float) -> dict[str, Any]:
    """Load one candidate, time batch 1 and 32; peak RSS added, top-10 ids of the 32-row batch."""
    import onnxruntime  # noqa: F401  (imported before the baseline RSS is read)

    from compress.evaluate import session

    if kind != "onnx":
        import faiss

        faiss.omp_set_num_threads(1)
    feeds = dict(np.load(feeds_path))
    rss0 = _status_kib("VmRSS")
    if kind == "onnx":
        sess = session(path, threads=1)

        def run(b: int) -> np.ndarray:
            ids, _ = sess.run(None, {"history": feeds[f"history{b}"], "exclude": feeds[f"exclude{b}"]})
            return np.asarray(ids)
    else:
        index = faiss.read_index(str(path))
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = 128
        if kind == "faiss_rescore":
            t = np.load(path.parent / "int8_table.npz")
            qweight, scale = t["qweight"], t["scale"].astype(np.float32)[:, 0]

        def run(b: int) -> np.ndarray:
            u = feeds[f"user{b}"]
            if kind == "faiss":
                return np.asarray(index.search(u, top_k)[1])
            short: np.ndarray = np.asarray(index.search(u, shortlist)[1])
            exact = np.einsum("bsd,bd->bs", qweight[short].astype(np.float32), u) * scale[short]
            part = np.argpartition(-exact, top_k - 1, axis=1)[:, :top_k]
            best = np.take_along_axis(part, np.argsort(-np.take_along_axis(exact, part, 1), 1, kind="stable"), 1)
            return np.asarray(np.take_along_axis(short, best, 1))

    res: dict[str, Any] = {}
    for b in BATCHES:
        times, ids = _timed(lambda b=b: run(b), seconds)
        times.sort()
        res[str(b)] = {
            "p50_ms": float(np.median(times)),
            "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))],
            "calls": len(times),
        }
        if b == max(BATCHES):
            res["top10"] = ids[:, :10].tolist()
    res["rss_added_mib"] = (_status_kib("VmHWM") - rss0) / 1024
    return res


def _time_subprocess(b: Built, feeds: Path, cfg: Any, seconds: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "loadtest.bench_rec_scale_inproc",
        "--time-one",
        b.kind,
        str(b.path),
        "--feeds",
        str(feeds),
        "--seconds",
        str(seconds),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=PROJECT_ROOT, env=env, timeout=1800)
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def overlap(ids: list[list[int]], ref: list[list[int]]) -> float:
    return float(np.mean([len(set(a) & set(r)) / len(r) for a, r in zip(ids, ref, strict=True)]))


def render(rows: list[Built], n: int, cfg: Any, seconds: float) -> str:
    flat = next((r for r in rows if r.name.startswith("faiss flat")), None)
    fp32 = rows[0]
    t = cfg.train
    lines = [
        f"**SYNTHETIC** catalogue: {n:,} random items (Gaussian mixture), dim {t.dim}, history {t.history_len}, "
        f"top-K {cfg.retrieval.top_k}, shortlist {cfg.retrieval.shortlist}; latency and memory only. 1 thread, "
        f"ms per call (p50 / p99 over >= {seconds:g} s per cell); overlap@10 = share of the exact top 10 returned "
        "(on these synthetic vectors; ONNX rows vs the fp32 graph, faiss rows vs faiss flat).",
        "",
        "| candidate | stored MiB | RSS added MiB | build s | b=1 p50 / p99 ms | b=32 p50 / p99 ms | rows/s at b=32 "
        "| overlap@10 | how |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ref = fp32 if r.kind == "onnx" else flat
        ov = f"{overlap(r.timing['top10'], ref.timing['top10']):.3f}" if ref is not None else "-"
        b1, b32 = r.timing["1"], r.timing["32"]
        lines.append(
            f"| {r.name} | {r.stored_bytes / 2**20:,.1f} | {r.timing['rss_added_mib']:,.0f} | {r.build_s:.1f} | "
            f"{b1['p50_ms']:.2f} / {b1['p99_ms']:.2f} | {b32['p50_ms']:.1f} / {b32['p99_ms']:.1f} | "
            f"{32e3 / b32['p50_ms']:,.0f} | {ov} | {r.notes} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_rec_scale_inproc", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--items", type=int, help="SYNTHETIC catalogue size (default: [retrieval].scale_items)")
    p.add_argument("--seconds", type=float, default=3.0, help="timing time per candidate and batch size")
    p.add_argument("--no-hnsw", action="store_true", help="skip the HNSW index (its build takes minutes at 1M)")
    p.add_argument("--no-faiss", action="store_true", help="ONNX candidates only")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    p.add_argument("--time-one", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--feeds", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from compress.config import load_config

    cfg: Any = load_config(args.config)
    if args.time_one:
        kind, path = args.time_one
        r = cfg.retrieval
        print(json.dumps(time_one(kind, Path(path), args.feeds, r.shortlist, r.top_k, args.seconds)))
        return
    n = args.items or cfg.retrieval.scale_items
    with tempfile.TemporaryDirectory(prefix="rec-scale-") as tmp:
        work = Path(tmp)
        rows, feeds_path = build_all(cfg, n, work, args)
        for b in rows:
            b.timing = _time_subprocess(b, feeds_path, cfg, args.seconds)
            print(
                f"  timed {b.name}: {b.timing['1']['p50_ms']:.2f} / {b.timing['32']['p50_ms']:.1f} ms", file=sys.stderr
            )
    table = render(rows, n, cfg, args.seconds)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


def build_all(cfg: Any, n: int, work: Path, args: Any) -> tuple[list[Built], Path]:
    """Every candidate written under ``work``, and the shared request feeds (histories, user vectors)."""
    import torch

    torch.set_num_threads(2)
    print(f"SYNTHETIC catalogue of {n:,} items", file=sys.stderr)
    model = synthetic_model(cfg, n, cfg.train.seed)
    rng = np.random.default_rng(cfg.train.seed + 7)
    L = cfg.train.history_len
    feeds: dict[str, np.ndarray] = {}
    for b in BATCHES:
        hist = np.zeros((b, L), np.int64)
        hist[:, :HISTORY_ITEMS] = rng.integers(1, n, (b, HISTORY_ITEMS))
        feeds[f"history{b}"], feeds[f"exclude{b}"] = hist, np.zeros((b, 1), np.int64)
        with torch.no_grad():
            feeds[f"user{b}"] = model.user(torch.from_numpy(hist)).numpy().astype(np.float32)
    feeds_path = work / "feeds.npz"
    arrays: dict[str, Any] = feeds
    np.savez(feeds_path, **arrays)
    example = {"history": feeds["history32"], "exclude": feeds["exclude32"]}
    rows = build_onnx(cfg, model, example, work)
    if not args.no_faiss:
        vectors = model.table.weight.detach().numpy()
        rows += build_faiss(cfg, np.ascontiguousarray(vectors), work, not args.no_hnsw)
    return rows, feeds_path


if __name__ == "__main__":
    main()
