"""Text helpers shared by the text tasks (chat, search): batch padding and length bucketing (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAD_ID = 0
TOKENIZER_FILE = "tokenizer.json"


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int64 [N, longest]: padded to the batch's longest sequence, not a fixed size."""
    if not seqs:
        return np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64)
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def length_buckets(lengths: Sequence[int], max_batch: int) -> list[np.ndarray]:
    """Row indices grouped into batches of similar length (sorted, stable), so padding waste stays small."""
    if max_batch < 1:
        raise ValueError("max_batch must be >= 1")
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + max_batch] for i in range(0, len(order), max_batch)]
