"""A MiniLM cross-encoder: ``[CLS] query [SEP] product [SEP]`` -> one relevance score.

It reuses the chatbot's plain-torch MiniLM (``compress.minilm.model``): same weights loader, same layer code (so
ONNX Runtime's transformer optimizer fuses it the same way), mean pooling and a 1-unit head. The student is
``make_student`` of the teacher (fewer layers, pruned vocabulary, positions cut to the pair limit).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from compress.minilm.model import Encoder, load_teacher, make_student


class CrossEncoder(nn.Module):
    """input_ids, attention_mask [N, T] -> score [N, 1] (higher = more relevant)."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        score: torch.Tensor = self.encoder.head(self.encoder.embed(input_ids, attention_mask))
        return score


def load_cross_encoder(weights: Path, layers: list[int]) -> CrossEncoder:
    """all-MiniLM-L6-v2 with a fresh score head, keeping ``layers`` (all six for the real teacher)."""
    enc = load_teacher(weights, 1)
    if layers != list(range(len(enc.layers))):
        enc = make_student(enc, layers, None, max_pos=enc.position.num_embeddings)
    with torch.no_grad():
        enc.head.weight.normal_(0.0, 0.02, generator=torch.Generator().manual_seed(0))
        enc.head.bias.zero_()
    return CrossEncoder(enc)


def student_of(
    teacher: CrossEncoder, layers: list[int], keep_tokens: torch.Tensor | None, max_pos: int
) -> CrossEncoder:
    """The teacher's ``layers`` (indices into its own), its head, optionally a pruned vocabulary."""
    return CrossEncoder(make_student(copy.deepcopy(teacher.encoder), layers, keep_tokens, max_pos=max_pos))


class BiEncoder(nn.Module):
    """input_ids, attention_mask [N, T] of one text per row -> unit vector [N, 384] (queries and products alike).

    Relevance is the dot product of a query's and a product's vectors, so product vectors can be computed once,
    at publish time, and a request costs one short query encoding.
    """

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder.embed(input_ids, attention_mask)


def load_bi_encoder(weights: Path, layers: list[int]) -> BiEncoder:
    """all-MiniLM-L6-v2 as published (zero-shot sentence embeddings), keeping ``layers`` (all six but in CI)."""
    enc = load_teacher(weights, 1)
    if layers != list(range(len(enc.layers))):
        enc = make_student(enc, layers, None, max_pos=enc.position.num_embeddings)
    return BiEncoder(enc)
