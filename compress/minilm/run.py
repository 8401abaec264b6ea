"""Torch runs of a MiniLM encoder: fixed threads (reproducible), length-bucketed batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from app.tasks.text import length_buckets, pad_batch
from compress.progress import Heartbeat


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` torch threads with denormals flushed; restore both afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(old)


def run_model(model: nn.Module, seqs: Sequence[Sequence[int]], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(logits, embeddings) of every sequence, in length-bucketed batches (little padding), original order."""
    model.eval()
    logits: np.ndarray | None = None
    emb = np.zeros((len(seqs), 384), np.float32)
    beat = Heartbeat("torch inference", len(seqs), unit="row")
    with torch.no_grad():
        for idx in length_buckets([len(s) for s in seqs], batch):
            ids, mask = pad_batch([seqs[i] for i in idx])
            lo, e = model(torch.from_numpy(ids), torch.from_numpy(mask))
            if logits is None:
                logits = np.zeros((len(seqs), lo.shape[1]), np.float32)
            logits[idx], emb[idx] = lo.numpy(), e.numpy()
            beat.tick(len(idx))
    return (logits if logits is not None else np.zeros((0, 0), np.float32)), emb
