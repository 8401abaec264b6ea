"""DeepFM-style CTR network (FM interactions + MLP + dense linear term) and its compressed embedding.

One fused embedding table holds every categorical field (per-field ids are shifted by constant offsets inside
the model), so the ONNX graph has a single Gather that embedding compression can replace.
"""

from __future__ import annotations

import torch
from torch import nn


class DeepFM(nn.Module):
    """``pctr = sigmoid(w.dense + sum(first-order) + FM(emb) + MLP([dense, emb]))``.

    Each table row is ``[first-order weight, D-dim vector]``: keeping the logistic-regression term inside the
    same row means one Gather serves both, and row-wise INT8 compresses both.

    A log may have no numeric columns (all-categorical) or no categorical ones (all-numeric): the missing part
    has no parameters and no model input, and ``forward`` takes the present inputs in the order
    ``dense``, ``sparse`` (the task's declared inputs).
    """

    offsets: torch.Tensor

    def __init__(self, cardinalities: list[int], n_dense: int, dim: int, hidden: list[int], dropout: float) -> None:
        super().__init__()
        if n_dense == 0 and not cardinalities:
            raise ValueError("DeepFM needs at least one dense or categorical column")
        self.n_dense, self.n_fields = n_dense, len(cardinalities)
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.int64).cumsum(0)[: self.n_fields]
        self.register_buffer("offsets", offsets)
        self.embedding: nn.Module | None = None
        if cardinalities:
            self.embedding = nn.Embedding(sum(cardinalities), dim + 1)
            nn.init.normal_(self.embedding.weight, std=0.01)
        self.dense_linear = nn.Linear(n_dense, 1) if n_dense else None
        self.mlp = build_mlp(n_dense + len(cardinalities) * dim, hidden, dropout)

    def logit(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """Logits from both tensors (a part without columns is ignored, whatever its width)."""
        deep_in: list[torch.Tensor] = []
        shallow: list[torch.Tensor] = []
        if self.dense_linear is not None:
            deep_in.append(dense)
            shallow.append(self.dense_linear(dense))
        if self.embedding is not None:
            rows = self.embedding(sparse + self.offsets)  # [B, C, 1 + D]
            first, e = rows[:, :, 0], rows[:, :, 1:]
            shallow.append(0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1, keepdim=True))  # FM
            shallow.append(first.sum(1, keepdim=True))
            deep_in.append(e.flatten(1))
        out: torch.Tensor = self.mlp(torch.cat(deep_in, dim=1) if len(deep_in) > 1 else deep_in[0])
        for term in shallow:
            out = out + term
        return out

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``(dense, sparse)``, ``(dense,)`` or ``(sparse,)``: the inputs the model has, in that order."""
        if self.dense_linear is not None and self.embedding is not None:
            dense, sparse = inputs
        elif self.dense_linear is not None:
            (dense,), sparse = inputs, inputs[0]
        else:
            (sparse,), dense = inputs, inputs[0]
        out: torch.Tensor = torch.sigmoid(self.logit(dense, sparse))
        return out


def build_mlp(n_in: int, hidden: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.ReLU(), nn.Dropout(dropout)]
        n_in = h
    layers.append(nn.Linear(n_in, 1))
    return nn.Sequential(*layers)


def hidden_linears(mlp: nn.Sequential) -> list[int]:
    """Indices of the Linear layers whose outputs are hidden units (every Linear except the last)."""
    idx = [i for i, m in enumerate(mlp) if isinstance(m, nn.Linear)]
    return idx[:-1]
