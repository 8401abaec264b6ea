"""DeepFM-style CTR network (FM interactions + MLP + dense linear term) and its compressed embedding.

One fused embedding table holds every categorical field (per-field ids are shifted by constant offsets inside
the model), so the ONNX graph has a single Gather that embedding compression can replace.
"""

from __future__ import annotations

import torch
from torch import nn


class RowwiseInt8Embedding(nn.Module):
    """Embedding rows stored as int8 with one fp16 scale per row (symmetric): ~3.6x smaller than fp32 at dim 16.

    Per-row scales keep rare rows (small norms) as precise as frequent ones, which a single per-table scale
    would crush. The ONNX export is Gather(int8) -> Cast -> Mul(Gather(scale)).
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        w = weight.detach().float()
        scale = (w.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-8).half()
        q = torch.round(w / scale.float()).clamp_(-127, 127).to(torch.int8)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.qweight[idx].float() * self.scale[idx].float()

    @property
    def num_embeddings(self) -> int:
        return int(self.qweight.shape[0])


class DeepFM(nn.Module):
    """``pctr = sigmoid(w.dense + sum(first-order) + FM(emb) + MLP([dense, emb]))``.

    Each table row is ``[first-order weight, D-dim vector]``: keeping the logistic-regression term inside the
    same row means one Gather serves both, and row-wise INT8 compresses both.
    """

    def __init__(
        self, cardinalities: list[int], n_dense: int, dim: int, hidden: list[int], dropout: float
    ) -> None:
        super().__init__()
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.int64).cumsum(0)
        self.register_buffer("offsets", offsets)
        self.embedding: nn.Module = nn.Embedding(sum(cardinalities), dim + 1)
        nn.init.normal_(self.embedding.weight, std=0.01)
        self.dense_linear = nn.Linear(n_dense, 1)
        self.mlp = build_mlp(n_dense + len(cardinalities) * dim, hidden, dropout)

    def logit(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        rows = self.embedding(sparse + self.offsets)  # [B, C, 1 + D]
        first, e = rows[:, :, 0], rows[:, :, 1:]
        fm = 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1, keepdim=True)
        deep = self.mlp(torch.cat([dense, e.flatten(1)], dim=1))
        return deep + fm + first.sum(1, keepdim=True) + self.dense_linear(dense)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(dense, sparse))


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
