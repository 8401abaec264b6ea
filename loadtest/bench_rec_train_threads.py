"""Seconds per two-tower training batch with 1 and 2 torch threads, interleaved, on a recommend config's log.

Why: ``[train].threads`` is a default someone has to pick. On a shared 2-core machine a second torch thread
waits for a core more than it computes; this measures it on the config's own data (the model, the batch and the
full softmax of ``compress.recommend.train``), alternating the thread counts so both see the same load.

    python -m loadtest.bench_rec_train_threads ratings.toml --batches 15 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    import torch
    from torch.nn import functional as F

    from compress.config import load_config
    from compress.recommend.config import RecConfig
    from compress.recommend.data import VALIDATION
    from compress.recommend.model import TwoTower
    from compress.recommend.task import load_split
    from compress.recommend.train import _multi_hot

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--batches", type=int, default=15, help="training batches per (round, thread count)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    cfg = load_config(a.config)
    assert isinstance(cfg, RecConfig), "a task = 'recommend' config"
    t = cfg.train
    split = load_split(cfg)
    train = split.training(VALIDATION, t.max_examples)
    n = len(split.items)
    hist = torch.from_numpy(train.history)
    per: dict[int, list[float]] = {1: [], 2: []}
    for rnd in range(a.rounds):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(t.seed)
            model = TwoTower(n, t.dim, t.hidden, t.history_len, cfg.retrieval.top_k)
            opt = torch.optim.Adam(model.parameters(), lr=t.lr)
            start = time.perf_counter()
            for b in range(a.batches):
                idx = torch.arange(b * t.batch_size, (b + 1) * t.batch_size) % len(train)
                y = _multi_hot([train.targets[j] for j in idx.tolist()], n)
                loss = -(y * F.log_softmax(model.scores(hist[idx]), 1)).sum(1).mean()
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
            per[threads].append((time.perf_counter() - start) / a.batches)
            print(f"round {rnd + 1} threads {threads}: {per[threads][-1]:.3f} s/batch", flush=True)
    med = {k: statistics.median(v) for k, v in per.items()}
    batches = -(-len(train) // t.batch_size)
    print(
        f"median s/batch: 1 thread {med[1]:.3f}, 2 threads {med[2]:.3f} (2/1 = {med[2] / med[1]:.2f}x); "
        f"{batches} batches per epoch; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
