"""Structured pruning of MLP hidden units: matrices really shrink (fewer rows/columns), not masked zeros.

A unit's importance is ``||incoming row|| * ||outgoing column||`` (the product bounds how much the unit can
move the next layer's input); the lowest-scoring units are removed from both adjacent Linear layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def unit_importance(layer: nn.Linear, nxt: nn.Linear) -> torch.Tensor:
    w_in = torch.cat([layer.weight, layer.bias.unsqueeze(1)], dim=1) if layer.bias is not None else layer.weight
    importance: torch.Tensor = w_in.norm(dim=1) * nxt.weight.norm(dim=0)
    return importance


def _slice_linear(layer: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    w = layer.weight.detach()
    b = layer.bias.detach() if layer.bias is not None else None
    if rows is not None:
        w = w[rows]
        b = b[rows] if b is not None else None
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def prune_mlp(mlp: nn.Sequential, keep_ratio: float) -> list[tuple[int, int]]:
    """Prune every hidden Linear of ``mlp`` in place to ``ceil(keep_ratio * units)``; returns (before, after)."""
    if not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    linears = [i for i, m in enumerate(mlp) if isinstance(m, nn.Linear)]
    shapes = []
    for a, b in zip(linears[:-1], linears[1:], strict=True):
        layer, nxt = mlp[a], mlp[b]  # both nn.Linear by construction of ``linears``
        assert isinstance(layer, nn.Linear) and isinstance(nxt, nn.Linear)
        k = max(1, math.ceil(layer.out_features * keep_ratio))
        keep = torch.topk(unit_importance(layer, nxt), k).indices.sort().values
        shapes.append((layer.out_features, k))
        mlp[a] = _slice_linear(layer, keep, None)
        mlp[b] = _slice_linear(nxt, None, keep)
    return shapes
