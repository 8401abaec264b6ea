"""Search ranking latency: a 50-candidate request, per candidate in process and for the published ranker over HTTP.

``--workdir`` (the ``--workdir`` of a ``compress run`` of a search config, holding ``report.json`` and every
candidate's ONNX file): each candidate runs the same 50-pair batch (a held-out query's judged products, padded to
their longest pair) on a 1-thread session, with 1 and 8 client threads at once; the two baselines (BM25, zero-shot
MiniLM with product vectors precomputed) are timed per request too. ``--repo``: ``POST /v1/search/rank`` through
the real server with wrk (50 id-only candidates) at 1 and 8 connections.

    python -m loadtest.bench_search --config compress/configs/search.toml --workdir /tmp/search-work \\
        --repo /tmp/search-repo --seconds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

N_CANDIDATES = 50


def _request(task: Any) -> tuple[str, list[str], dict[str, np.ndarray]]:
    """A held-out query and 50 catalogue products (its judged list, topped up from the catalogue)."""
    d = task.data
    j = max((d.lists[q] for q in task.split.test), key=lambda x: len(x.products))
    extra = [p for p in task.product_ids if p not in set(j.products)]
    products = (j.products + extra)[:N_CANDIDATES]
    q = task.query_tokens[d.lists.index(j)]
    if task.bi:  # a bi-encoder request of id-only candidates is one query row (product vectors are stored)
        from app.tasks.search.text import single_seq

        return j.query, products, task._feeds([single_seq(q)])
    ids, mask = task._feeds([task.enc.pair(q, task.product_tokens[p])[0] for p in products]).values()
    width = int(mask.sum(1).max())
    return j.query, products, {"input_ids": ids[:, :width], "attention_mask": mask[:, :width]}


def timed(fn: Callable[[], object], clients: int, seconds: float) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, requests/s) of ``fn`` called in a loop by ``clients`` threads for ``seconds``."""
    times: list[float] = []
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def loop() -> None:
        mine = []
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            fn()
            mine.append((time.perf_counter() - t0) * 1e3)
        with lock:
            times.extend(mine)

    fn()
    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q = statistics.quantiles(times, n=100)
    return statistics.median(times), q[98], len(times) / seconds


def in_process(cfg_path: Path, workdir: Path, seconds: float) -> list[dict[str, Any]]:
    from compress.config import load_config
    from compress.evaluate import session
    from compress.search.task import SearchTask

    cfg = load_config(cfg_path)
    task = SearchTask(cfg)  # type: ignore[arg-type]
    task.prepare()
    query, products, feeds = _request(task)
    report = json.loads((workdir / "report.json").read_text())
    rows = []
    for c in report["candidates"]:
        path = workdir / f"{c['name'].replace('+', '__')}.onnx"
        if not path.is_file():
            continue
        sess = session(path, 1)
        row = {
            "name": c["name"],
            "bytes": c["bytes"],
            "metrics": c["metrics"],
            "selected": c["name"] == report["selected"],
        }

        stored: tuple[np.ndarray, np.ndarray] | None = None
        if task.bi:  # plus the dot product with the 50 candidates' stored INT8 vectors
            from app.tasks.search.text import quantize_rows, single_seq

            vec = task.predict(sess, task._feeds([single_seq(task.product_tokens[p]) for p in products]), "embedding")
            stored = quantize_rows(vec)

        def run(s: Any = sess, v: tuple[np.ndarray, np.ndarray] | None = stored) -> object:
            from app.tasks.search.text import dot_scores

            out = s.run(None, feeds)
            return out if v is None else dot_scores(out[0][0], *v)

        for clients in (1, 8):
            row[f"c{clients}"] = timed(run, clients, seconds)
        rows.append(row)
    rows.extend(_baselines(task, query, products, seconds))
    return rows


def _baselines(task: Any, query: str, products: list[str], seconds: float) -> list[dict[str, Any]]:
    import torch
    from rank_bm25 import BM25Okapi  # type: ignore[import-untyped]

    from compress.minilm.model import load_teacher
    from compress.search.baselines import bm25_lists
    from compress.search.train import embed, single_seqs, words

    bm25_lists(task, [task.split.test[0]])  # builds the corpus text once
    ids = list(task._bm25_corpus)
    pos = [ids.index(p) for p in products]
    bm = BM25Okapi([words(task._bm25_corpus[p]) for p in ids])
    torch.set_num_threads(1)
    enc = load_teacher(task.weights, 1)
    p_vec = embed(enc, single_seqs([task.product_tokens[p] for p in products], task.cfg.rank.max_tokens))
    (q_tok,), _ = task.enc.queries([query])
    q_seq = single_seqs([q_tok], task.cfg.rank.max_tokens)

    def minilm() -> object:
        return p_vec @ embed(enc, q_seq)[0]

    out = []
    for name, fn in (
        ("baseline: BM25 (rank-bm25)", lambda: bm.get_batch_scores(words(query), pos)),
        ("baseline: zero-shot MiniLM cosine", minilm),
    ):
        out.append(
            {
                "name": name,
                "bytes": 0,
                "metrics": {},
                "selected": False,
                **{f"c{c}": timed(fn, c, seconds) for c in (1, 8)},
            }
        )
    return out


def over_http(repo: Path, cfg_path: Path, seconds: int, runs: int, budget_ms: float) -> list[tuple[int, Any]]:
    """wrk against a real ``python -m app`` serving the repository's latest ranker; medians over ``runs``."""
    from compress.config import load_config
    from compress.search.task import SearchTask
    from loadtest.harness import wrk
    from loadtest.harness.procs import python_server as server
    from loadtest.peers.measure import run_wrk

    task = SearchTask(load_config(cfg_path))  # type: ignore[arg-type]
    task.prepare()
    query, products, _ = _request(task)
    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    script = wrk.post_script(work / "rank.lua", {"query": query, "candidates": [{"product_id": p} for p in products]})
    name = task.cfg.model.name
    env = {"MODEL_REPO": str(repo), "APP_REQUIRED_MODELS": name, "APP_LOG_LEVEL": "warning",
           "APP_QUEUE_BUDGETS_MS": json.dumps({name: budget_ms})}  # fmt: skip
    out: list[tuple[int, Any]] = []
    with server(["-m", "app"], env, work / "server.log") as (url, pid):
        for c in (1, 8):
            samples = [run_wrk(url + "/v1/search/rank", script, c, seconds, pid) for _ in range(runs)]
            errors = statistics.median(s.wrk.errors for s in samples)
            med = [statistics.median(getattr(s.wrk, k) for s in samples) for k in ("rps", "p50_ms", "p99_ms")]
            out.append((c, (*med, errors)))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--workdir", type=Path, help="a compress run's --workdir: time every candidate in process")
    p.add_argument("--repo", type=Path, help="a repository with the published ranker: time it over HTTP")
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--queue-budget-ms", type=float, default=1000.0, help="the server's admission budget for the ranker")
    args = p.parse_args(argv)
    if args.workdir:
        rows = in_process(args.config, args.workdir, args.seconds)
        ref = rows[0]["bytes"]
        print(
            "| candidate | bytes | x smaller | NDCG@10 | MRR | 50-cand. p50 / p99 ms, 1 client | "
            "p50 / p99 ms, 8 clients | req/s at 8 |\n|---|---|---|---|---|---|---|---|"
        )
        for r in rows:
            m = r["metrics"]
            size = f"{r['bytes']:,} | {ref / r['bytes']:.2f}" if r["bytes"] else "- | -"
            nd = f"{m['ndcg_10']:.4f} | {m['mrr']:.4f}" if m else "see below | see below"
            name = f"**{r['name']}** (selected)" if r["selected"] else r["name"]
            c1, c8 = r["c1"], r["c8"]
            print(f"| {name} | {size} | {nd} | {c1[0]:.2f} / {c1[1]:.2f} | {c8[0]:.2f} / {c8[1]:.2f} | {c8[2]:.0f} |")
    if args.repo:
        print("| clients | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|")
        for c, r in over_http(args.repo, args.config, args.seconds, args.runs, args.queue_budget_ms):
            print(f"| {c} | {r[0]:,.1f} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.0f} |")


if __name__ == "__main__":
    main()
