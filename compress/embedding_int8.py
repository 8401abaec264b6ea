"""Row-wise INT8 embedding: the compression transform every task with an embedding table can apply."""

from __future__ import annotations

import torch
from torch import nn


class RowwiseInt8Embedding(nn.Module):
    """Embedding rows stored as int8 with one fp16 scale per row (symmetric): ~3.6x smaller than fp32 at dim 16.

    Per-row scales keep rare rows (small norms) as precise as frequent ones, which a single per-table scale
    would crush. The ONNX export is Gather(int8) -> Cast -> Mul(Gather(scale)).
    """

    qweight: torch.Tensor
    scale: torch.Tensor

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
