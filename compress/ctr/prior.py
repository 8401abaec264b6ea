"""Rows shown to the CTR network with no usable feature, so an empty request scores near the base rate.

A request with no features (or only values the vocabulary never saw) becomes an all-missing (or all-rare)
row. A log without missing values never trains the missing embedding rows, so such a row scores whatever the
untrained rows and the MLP's biases happen to give (2.5x the base rate was measured on an all-categorical log).
Blanking a small random share of every training batch, labels kept, teaches the network that a row without
information has the average label: the base rate, by the logloss optimum.
"""

from __future__ import annotations

import torch

from app.tasks.ctr.features import MISSING_ID, RARE_ID


def blank_rows(
    dense: torch.Tensor, sparse: torch.Tensor, share: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of a batch where each row, with probability ``share``, has every feature missing or unknown.

    Half of the blanked rows get the missing id in every field, half the rare/unseen id; their dense values
    become 0 (the standardised training mean, which is what a missing dense value is served as).
    """
    if share <= 0:
        return dense, sparse
    n = sparse.shape[0] if sparse.numel() else dense.shape[0]
    draw = torch.rand(n, generator=gen)
    blank = draw < share
    if not bool(blank.any()):
        return dense, sparse
    unknown = draw < share / 2  # the lower half of the blanked rows: every field unseen
    dense = dense.masked_fill(blank[:, None], 0.0) if dense.numel() else dense
    if sparse.numel():
        fill = torch.where(unknown, RARE_ID, MISSING_ID).to(sparse.dtype)[:, None].expand_as(sparse)
        sparse = torch.where(blank[:, None], fill, sparse)
    return dense, sparse
