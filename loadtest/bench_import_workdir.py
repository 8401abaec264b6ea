"""Candidates of one ``compress import --workdir DIR`` run, timed side by side: median ms and speed-up vs FP32.

Each of ``--runs`` runs is ``compress.evaluate.latency_stats`` over every candidate file (interleaved rounds,
``--repeats`` calls per batch size); the table gives the median over runs of each run's median, and the median
over runs of each run's FP32 / candidate ratio (the smallest and largest run's in brackets), and the load average
seen before each run.

    python -m compress import deepfm.onnx ... --workdir /tmp/deepfm-work
    python -m loadtest.bench_import_workdir /tmp/deepfm-work --feeds X.npz \\
        --candidates fp32,int8_dynamic_s8+int8_weights,fused_gathers,fused_gathers+int8_dynamic_s8+int8_weights

``--feeds`` is an NPZ with one array per model input (the rows are tiled/truncated to each batch size).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def candidate_file(workdir: Path, name: str) -> Path:
    """Where ``compress import`` writes candidate ``name`` (``fused_gathers+X`` is built in its own folder)."""
    if name.startswith("fused_gathers+"):
        return workdir / "fused_gathers" / (name.removeprefix("fused_gathers+").replace("+", "__") + ".onnx")
    return workdir / (name.replace("+", "__") + ".onnx")


def main(argv: list[str] | None = None) -> None:
    from compress.evaluate import latency_stats, session

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--feeds", type=Path, required=True, help="NPZ: one array per model input")
    ap.add_argument("--candidates", default="fp32,int8_dynamic_s8+int8_weights")
    ap.add_argument("--batch-sizes", default="1,64,512")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    if names[0] != "fp32":
        names.insert(0, "fp32")
    with np.load(args.feeds) as z:
        feeds = {k: z[k] for k in z.files}
    rows = len(next(iter(feeds.values())))
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    batches = {b: {k: np.resize(v, (b, *v.shape[1:])) if b > rows else v[:b] for k, v in feeds.items()} for b in sizes}
    sessions = {n: session(candidate_file(args.workdir, n)) for n in names}
    runs = []
    for r in range(args.runs):
        load = os.getloadavg()
        runs.append(latency_stats(sessions, batches, args.repeats, rounds=10))
        print(f"run {r + 1}/{args.runs}: load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", flush=True)
    keys = [str(b) for b in sizes]
    print(
        "| candidate | bytes | "
        + " | ".join(f"ms @{b}" for b in keys)
        + " | "
        + " | ".join(f"x @{b}" for b in keys)
        + " |"
    )
    print("|---|---|" + "---|" * (2 * len(keys)))
    for n in names:
        ms = [float(np.median([st[n][b][0] for st in runs])) for b in keys]
        ratios = [[st["fp32"][b][0] / st[n][b][0] for st in runs] for b in keys]
        shown = [f"{np.median(r):.2f} ({min(r):.2f}-{max(r):.2f})" for r in ratios]
        size = candidate_file(args.workdir, n).stat().st_size
        print(f"| {n} | {size:,} | " + " | ".join(f"{m:.3f}" for m in ms) + " | " + " | ".join(shown) + " |")


if __name__ == "__main__":
    main()
