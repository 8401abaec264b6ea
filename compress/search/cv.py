"""k-fold cross-validation over queries: how noisy is a 25-query NDCG@10?

Each fold's queries are held out in turn (folds from ``[split]``: the seeded query permutation, position mod k);
the teacher is fine-tuned on the other folds with the config's ``[train]`` settings, and it, both baselines and the
zero-shot bi-encoder as served (query vector . row-wise INT8 product vector; nothing to train, so no fold leaks)
are scored on the held-out fold. ``--baselines-only`` skips the teacher (the per-fold training is the CPU cost). Prints mean and standard deviation over folds; ``--json`` writes the numbers.

    python -m compress.search.cv compress/configs/search.toml --json /tmp/search-cv.json
    python -m compress.search.cv compress/configs/search_bi.toml --baselines-only \
        --onnx int8_weights_int4emb=/tmp/srch/w8/work/int8_weights_int4emb.onnx
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from compress.config import load_config
from compress.search.baselines import bm25_lists, minilm_both, onnx_bi_lists, per_query_ndcg
from compress.search.config import SearchConfig
from compress.search.task import SearchTask

log = logging.getLogger("compress")


def cross_validate(cfg: SearchConfig, models: bool = True, onnx: dict[str, Path] | None = None) -> dict[str, Any]:
    """Per-fold mean NDCG@k of BM25, zero-shot MiniLM (FP32 cosine and the INT8-vector bi-encoder),
    (``models``) the fine-tuned teacher and ``onnx``: bi-encoder candidates of a ``compress run`` as served
    (zero-shot, so scoring every query with them leaks nothing)."""
    from compress.minilm.run import torch_threads
    from compress.search.model import load_cross_encoder
    from compress.search.train import fine_tune, score

    task = SearchTask(cfg)
    task.prepare()
    n = len(task.data.lists)
    everyone = list(range(n))
    bm25 = per_query_ndcg(task, everyone, bm25_lists(task, everyone))
    cosine, served = minilm_both(task, everyone)
    minilm = per_query_ndcg(task, everyone, cosine)
    bi = per_query_ndcg(task, everyone, served)
    cands = {name: per_query_ndcg(task, everyone, onnx_bi_lists(task, everyone, p)) for name, p in (onnx or {}).items()}
    folds = np.asarray(task.split.folds)
    out: dict[str, list[float]] = {"bm25": [], "minilm": [], "bi_encoder_int8": [], "teacher": []}
    out.update({name: [] for name in cands})
    t = cfg.train
    for k in range(cfg.split.folds):
        held = [q for q in everyone if folds[q] == k]
        out["bm25"].append(float(bm25[held].mean()))
        out["minilm"].append(float(minilm[held].mean()))
        out["bi_encoder_int8"].append(float(bi[held].mean()))
        for name, per_q in cands.items():
            out[name].append(float(per_q[held].mean()))
        if models:
            train = [q for q in everyone if folds[q] != k]
            if cfg.split.max_train_queries is not None:
                train = train[: cfg.split.max_train_queries]
            with torch_threads(t.threads):
                model = load_cross_encoder(task.weights, t.layers)
                fine_tune(
                    model,
                    task.lists(train),
                    epochs=t.epochs,
                    lr=t.lr,
                    per_step=t.queries_per_step,
                    temperature=t.temperature,
                    seed=t.seed,
                    head_lr=t.head_lr,
                )
                part = task.lists(held)
                out["teacher"].append(task.part_metrics(score(model, part.seqs), part)[f"ndcg_{cfg.rank.ndcg_k}"])
        log.info("fold %d/%d: %s", k + 1, cfg.split.folds, {m: v[-1] for m, v in out.items() if v})
    return {
        "folds": cfg.split.folds,
        "per_fold": out,
        "summary": {
            m: {"mean": round(float(np.mean(v)), 5), "std": round(float(np.std(v, ddof=1)), 5)}
            for m, v in out.items()
            if len(v) > 1
        },
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path)
    p.add_argument("--baselines-only", action="store_true", help="skip the per-fold teacher training")
    p.add_argument("--json", type=Path, help="write the per-fold numbers here")
    p.add_argument(
        "--onnx",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also score this bi-encoder ONNX candidate as served (e.g. a compress run's workdir file); repeatable",
    )
    args = p.parse_args(argv)
    onnx = {}
    for spec in args.onnx:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--onnx {spec!r}: expected NAME=PATH of an existing ONNX file")
        onnx[name] = Path(path)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_config(args.config)
    if not isinstance(cfg, SearchConfig):
        raise SystemExit(f"{args.config} is not a search config")
    res = cross_validate(cfg, models=not args.baselines_only, onnx=onnx)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    for m, s in res["summary"].items():
        print(f"{m}: NDCG@{cfg.rank.ndcg_k} {s['mean']:.4f} ± {s['std']:.4f} (std over {res['folds']} query folds)")


if __name__ == "__main__":
    main()
