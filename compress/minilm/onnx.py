"""ONNX helpers for the chatbot: the ORT transformer optimizer for FP32, and length-bucketed ORT inference."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from app.tasks.text import length_buckets
from compress.errors import ExportError
from compress.progress import Heartbeat

Feeds = dict[str, np.ndarray]
log = logging.getLogger("compress")


def transformer_optimize(src: Path, dst: Path, num_heads: int, hidden: int, check: Feeds) -> dict[str, int]:
    """ORT's BERT fusions (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu), offline.

    Level 1 keeps the file provider-independent apart from the com.microsoft contrib ops ORT CPU/CUDA run.
    The fused model must reproduce the source's outputs on ``check`` within 1e-4, else ExportError.
    Returns the fused-operator counts (recorded in the recipe).
    """
    from onnxruntime.transformers.optimizer import optimize_model

    from compress.evaluate import session

    model = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden, opt_level=1)
    stats = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    model.save_model_to_file(str(dst))
    ref, got = session(src, 2).run(None, check), session(dst, 2).run(None, check)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ref, got, strict=True))
    if diff > 1e-4:
        raise ExportError(f"{dst.name}: transformer-optimized outputs differ from the export by {diff:.2e} (> 1e-4)")
    log.info("transformer optimizer fused %s (max output diff %.1e)", stats, diff)
    return stats


def predict_trimmed(sess: Any, feeds: Feeds, outputs: list[str], batch: int = 256) -> list[np.ndarray]:
    """Run rows in batches of similar length, each cut to its longest row (not the feeds' global padding).

    Padding columns are masked anyway, so results equal the untrimmed run; the work shrinks to real tokens.
    Returns each of ``outputs`` in the original row order.
    """
    lengths = feeds["attention_mask"].sum(axis=1)
    n = len(lengths)
    res: list[np.ndarray] = []
    beat = Heartbeat("ONNX inference", n, unit="row")
    for idx in length_buckets(lengths.tolist(), batch):
        width = max(int(lengths[idx].max()), 1)
        got = sess.run(outputs, {k: v[idx, :width] for k, v in feeds.items()})
        if not res:
            res = [np.zeros((n, *g.shape[1:]), dtype=g.dtype) for g in got]
        for r, g in zip(res, got, strict=True):
            r[idx] = g
        beat.tick(len(idx))
    return res


HIDDEN, HEADS = 384, 12
"""all-MiniLM-L6-v2's width and attention heads (the chatbot and the search ranker both start from it)."""


def optimize_minilm(src: Path, dst: Path, fp32_optimizer: str, check: dict[str, np.ndarray]) -> dict[str, Any]:
    """The FP32 reference graph of a MiniLM model: ORT basic optimisation, or the transformer optimizer's fusions
    checked against the unfused graph on ``check``; returns the recipe notes."""
    from compress.onnx_tools import optimize

    if fp32_optimizer == "basic":
        optimize(src, dst)
        return {"fp32_optimizer": "ORT basic"}
    return {
        "fp32_optimizer": "ORT transformer optimizer (bert, level 1)",
        "fused": transformer_optimize(src, dst, HEADS, HIDDEN, check),
    }
