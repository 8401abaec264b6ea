"""Running ONNX candidates with ONNX Runtime: batched predictions and single-thread latency."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.runtime.ort_options import cpu_session
from compress.progress import Heartbeat

Feeds = dict[str, np.ndarray]


def session(path: Path, threads: int = 1) -> Any:
    """A CPU session with fixed thread counts, so latency figures are comparable across candidates."""
    # the artifact's own config entries, as the server does (weight-only graphs fold their DQ)
    return cpu_session(path, intra_op_threads=threads, sequential=True, log_severity=3)


def slice_feeds(feeds: Feeds, start: int, stop: int) -> Feeds:
    return {k: v[start:stop] for k, v in feeds.items()}


def n_rows(feeds: Feeds) -> int:
    return len(next(iter(feeds.values())))


def predict(sess: Any, feeds: Feeds, output: str, batch: int = 4096) -> np.ndarray:
    """Run every row through ``sess`` in batches; returns ``output`` as float64 [N]."""
    out = []
    beat = Heartbeat("ONNX inference", n_rows(feeds), unit="row")
    for i in range(0, n_rows(feeds), batch):
        (res,) = sess.run([output], slice_feeds(feeds, i, i + batch))
        out.append(np.asarray(res, dtype=np.float64).reshape(len(res), -1))
        beat.tick(len(res))
    return np.concatenate(out).squeeze(1) if out[0].shape[1] == 1 else np.concatenate(out)


def tile_rows(feeds: Feeds, batch: int) -> Feeds:
    """A batch of exactly ``batch`` rows, repeating the held-out rows if there are fewer."""
    n = n_rows(feeds)
    idx = np.arange(batch) % n
    return {k: v[idx] for k, v in feeds.items()}


def latency_table(
    sessions: dict[str, Any], batches: dict[int, Feeds], repeats: int, rounds: int = 5
) -> dict[str, dict[str, float]]:
    """Median wall time (ms) of one ``run`` per session and batch size (see ``latency_stats``)."""
    stats = latency_stats(sessions, batches, repeats, rounds)
    return {k: {b: s[0] for b, s in per.items()} for k, per in stats.items()}


def latency_stats(
    sessions: dict[str, Any], batches: dict[int, Feeds], repeats: int, rounds: int = 5
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """``(median, low, high)`` wall time (ms) of one ``run`` per session and batch size (key: batch as a string).

    ``batches`` holds the input of each batch size (e.g. ``tile_rows(feeds, b)``, or a task's realistic
    batch). Sessions are measured side by side in interleaved rounds (each round times every session once per
    batch size), so drift and noise from other processes on a shared machine hit every candidate alike; the
    median over all rounds is reported, and ``low``/``high`` are the smallest and largest per-round medians:
    the noise band within which two candidates count as equally fast (``compress.selection``).
    """
    batch_sizes = list(batches)
    times: dict[str, dict[int, list[list[float]]]] = {k: {b: [] for b in batch_sizes} for k in sessions}
    for sess in sessions.values():  # warm-up: allocations, kernel selection
        for x in batches.values():
            sess.run(None, x)
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for name, sess in sessions.items():
            for b, x in batches.items():
                this_round = []
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    sess.run(None, x)
                    this_round.append((time.perf_counter() - t0) * 1e3)
                times[name][b].append(this_round)
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for k, per in times.items():
        out[k] = {}
        for b, rounds_ms in per.items():
            medians = [statistics.median(r) for r in rounds_ms]
            out[k][str(b)] = (statistics.median([t for r in rounds_ms for t in r]), min(medians), max(medians))
    return out
