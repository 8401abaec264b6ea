"""Cold start, measured on the real test customers: a share of the catalogue is treated as brand new.

The two-tower model learns one vector per item id, so a new id has none. For a random ``--share`` of the items
this replaces the learned vector by the title fallback of ``python -m compress catalogue --cold-start title``
(the mean of the 10 known items with the most IDF-weighted title words in common, the held-out items never
among them) and measures, over every (test customer, bought item) pair whose item is one of them, how often it
reaches the customer's top 10 / top 100 and its median rank: with its learned vector, the title vector, a zero
vector, and none (``--cold-start skip``: never returned). Also the whole catalogue's recall@10 / NDCG@10 with those items cold.
Exact scoring (every item, fp32 from the version's INT8 table, no repeat term: a new item is in no history).

    python -m loadtest.rec_cold_start --source REPO/recommend-ci/1 --config compress/configs/recommend_ci.toml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from compress.recommend.catalogue import TitleNeighbours, read_source


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.rec_cold_start", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, required=True, help="a published ANN recommendation version folder")
    p.add_argument("--config", type=Path, required=True, help="the config that trained it (its data and split)")
    p.add_argument("--share", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import onnxruntime as ort

    from compress.config import load_config
    from compress.recommend.data import TEST
    from compress.recommend.metrics import ranking_metrics
    from compress.recommend.task import load_split

    cfg: Any = load_config(args.config)
    src = read_source(args.source)
    split = load_split(cfg)
    if list(split.items) != src.state.items:
        raise SystemExit(f"{args.source} was not trained on this config's catalogue")
    ex = split.window(TEST)
    sess = ort.InferenceSession(str(src.dir / "model.onnx"), providers=["CPUExecutionProvider"])
    user = np.concatenate(
        [sess.run(["user"], {"history": ex.history[a : a + 512]})[0] for a in range(0, len(ex.history), 512)]
    )
    side = src.side
    n = len(side)
    rng = np.random.default_rng(args.seed)
    new = frozenset(int(i) for i in rng.choice(np.arange(1, n), size=int(args.share * (n - 1)), replace=False))
    fallback = TitleNeighbours(side, n)
    cold = side.vectors.copy()
    zero = side.vectors.copy()
    no_words = 0
    for j in new:
        got = fallback.vector(side.titles[j], skip=new)
        zero[j] = 0.0  # a neutral vector: score 0 for every customer
        cold[j] = zero[j] if got is None else got[0]
        no_words += got is None
    print(f"{len(new)} of {n - 1} items treated as new ({no_words} without a title word in common); "
          f"{len(ex.history)} test customers")  # fmt: skip
    print("| item vectors | new items' purchases in top 10 | in top 100 | their median rank | recall@10 (all) "
          "| NDCG@10 (all) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    rows = (
        ("learned (trained with the item)", side.vectors, False),
        ("title fallback (`--cold-start title`)", cold, False),
        ("zero vector (score 0)", zero, False),
        ("none (`--cold-start skip`: retired)", side.vectors, True),
    )
    pairs = [(r, t) for r, ts in enumerate(ex.targets) for t in ts.tolist() if t in new]
    for label, vec, never in rows:
        scores = user @ vec.T
        scores[:, 0] = -np.inf
        if never:
            scores[:, sorted(new)] = -np.inf
        top = np.argpartition(-scores, 100, axis=1)[:, :100]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
        hit10 = np.mean([t in top[r, :10] for r, t in pairs])
        hit100 = np.mean([t in top[r] for r, t in pairs])
        rank = "never" if never else f"{np.median([(scores[r] > scores[r, t]).sum() + 1 for r, t in pairs]):,.0f}"
        m = ranking_metrics(top, ex.targets, n - 1)
        print(f"| {label} | {hit10:.4f} | {hit100:.4f} | {rank} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} |")
    print(f"({len(pairs)} (customer, new item) purchase pairs)")


if __name__ == "__main__":
    main()
