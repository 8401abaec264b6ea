"""Two-tower retrieval with top-K inside the graph, and its compressed item stores.

``forward(history [B,L], exclude [B,E]) -> (item_ids [B,K], scores [B,K])``:

* user tower: recency-weighted mean of the history items' input embeddings (+ a residual MLP);
* item side: a retrieval table ``V`` [N, D] and a per-item bias;
* repeat term: items already in the history get ``sum_p softplus(r_p) * softplus(g_i)`` (recency r, item
  propensity g), so repeat and new items are scored together;
* ``exclude`` ids (0 = no-op padding) are pushed to -1e9 before TopK: one batched call answers every row.

The FP32 retrieval product is ``u @ W^T``, exported as one MatMul over the table stored [D, N] (no per-call copy);
the FP16/INT8 tables keep an ``einsum`` after ``CastLike``. Table compression is a model-level step (``table_fp16``,
``table_int8``, ``pq``); ANN retrieval is its own candidate family (:mod:`compress.recommend.ann`).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from compress.embedding_int8 import RowwiseInt8Embedding

NEG = -1e9


class _CastLike(torch.autograd.Function):
    """``x.to(like.dtype)`` exported as ONNX ``CastLike(x, like)``: ``like`` is a runtime tensor, so neither the
    exporter nor ORT folds the cast, and a stored INT8/FP16 table stays INT8/FP16 in the file and in memory."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.to(like.dtype)

    @staticmethod
    def symbolic(g: Any, x: Any, like: Any) -> Any:
        return g.op("CastLike", x, like)


def cast_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = _CastLike.apply(x, like)  # type: ignore[no-untyped-call]
    return out


class Fp32Table(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())

    def score(self, u: torch.Tensor) -> torch.Tensor:
        """``u @ W^T``: the exporter folds the transpose into a [D, N] initializer, so ORT runs one MatMul with
        no per-call copy of the table (an Einsum over [N, D] copies it into MatMul layout on every call)."""
        return u @ self.weight.t()

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        return self.weight[idx]

    def table_bytes(self) -> int:
        return int(self.weight.numel() * 4)


class Fp16Table(nn.Module):
    weight: torch.Tensor

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().half())

    def score(self, u: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bd,nd->bn", u, cast_like(self.weight, u))

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        return self.weight[idx].float()

    def table_bytes(self) -> int:
        return int(self.weight.numel() * 2)


class Int8Table(nn.Module):
    """Row-wise symmetric INT8 with an fp16 scale per row; the scale is applied after the product (N, not N x D)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.q = RowwiseInt8Embedding(weight)
        self.qweight: torch.Tensor = self.q.qweight
        self.scale: torch.Tensor = self.q.scale

    def score(self, u: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bd,nd->bn", u, cast_like(self.qweight, u)) * cast_like(self.scale, u).view(1, -1)

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.q(idx)
        return out

    def table_bytes(self) -> int:
        return int(self.qweight.numel() + self.scale.numel() * 2)


Table = Fp32Table | Fp16Table | Int8Table


class PQIndex(nn.Module):
    """Product quantization: M sub-spaces, C centroids each, one uint8 code per sub-space and item.

    Scores are asymmetric-distance inner products: a [B, M, C] lookup table from the user vector, then a
    Gather of each item's codes and a sum over sub-spaces.
    """

    books: torch.Tensor
    codes: torch.Tensor
    offsets: torch.Tensor

    def __init__(self, weight: torch.Tensor, m: int, c: int, seed: int = 0, iters: int = 15) -> None:
        super().__init__()
        n, d = weight.shape
        if d % m:
            raise ValueError(f"pq_subspaces {m} does not divide the embedding dim {d}")
        w = weight.detach().float().numpy().reshape(n, m, d // m)
        rng = np.random.default_rng(seed)
        books = np.zeros((m, c, d // m), np.float32)
        codes = np.zeros((n, m), np.int64)
        for j in range(m):
            x = w[:, j, :]
            cent = x[rng.choice(n, size=min(c, n), replace=False)].copy()
            if len(cent) < c:
                cent = np.concatenate([cent, np.zeros((c - len(cent), x.shape[1]), np.float32)])
            for _ in range(iters):
                assign = ((x[:, None, :] - cent[None]) ** 2).sum(-1).argmin(1)
                for k in range(c):
                    sel = x[assign == k]
                    if len(sel):
                        cent[k] = sel.mean(0)
            books[j], codes[:, j] = cent, assign
        self.m, self.c = m, c
        self.register_buffer("books", torch.from_numpy(books))
        self.register_buffer("codes", torch.from_numpy(codes.astype(np.uint8)))  # [N, M], one byte per code
        self.register_buffer("offsets", torch.arange(m, dtype=torch.int64).view(1, m) * c)
        self.n = n

    def score(self, u: torch.Tensor, like_int: torch.Tensor) -> torch.Tensor:
        """``like_int``: any runtime INT64 tensor (the codes are widened at run time, never stored wide)."""
        b = u.shape[0]
        lut = torch.einsum("bmd,mcd->bmc", u.view(b, self.m, -1), self.books).reshape(b, self.m * self.c)
        idx = (cast_like(self.codes, like_int) + self.offsets).view(-1)
        return lut[:, idx].view(b, self.n, self.m).sum(-1)

    def index_bytes(self) -> int:
        return int(self.n * self.m + self.books.numel() * 4)


class TwoTower(nn.Module):
    pad_mask: torch.Tensor

    def __init__(self, n_items: int, dim: int, hidden: int, history_len: int, top_k: int) -> None:
        super().__init__()
        self.inp: nn.Module = nn.Embedding(n_items, dim, padding_idx=0)
        nn.init.normal_(self.inp.weight, std=0.05)
        self.pos = nn.Parameter(torch.zeros(history_len))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.table: Table = Fp32Table(torch.randn(n_items, dim) * 0.05)
        self.bias = nn.Parameter(torch.zeros(n_items))
        self.rep_pos = nn.Parameter(torch.zeros(history_len))
        self.rep_item = nn.Parameter(torch.zeros(n_items))
        mask = torch.zeros(n_items)
        mask[0] = NEG
        self.register_buffer("pad_mask", mask)
        self.pq: PQIndex | None = None
        self.top_k, self.shortlist = top_k, top_k

    def user(self, hist: torch.Tensor) -> torch.Tensor:
        valid = (hist > 0).float()
        w = torch.exp(self.pos).view(1, -1) * valid
        e: torch.Tensor = self.inp(hist)
        pooled = (w.unsqueeze(-1) * e).sum(1) / (w.sum(1, keepdim=True) + 1e-6)
        out: torch.Tensor = pooled + self.mlp(pooled)
        return out

    def extra(self, hist: torch.Tensor) -> torch.Tensor:
        """Everything but the inner product: bias, padding mask, repeat term. [B, N]."""
        valid = (hist > 0).float()
        rep = F.softplus(self.rep_pos).view(1, -1) * valid
        base = (self.bias + self.pad_mask).view(1, -1).expand(hist.shape[0], -1)
        seen = torch.zeros_like(base).scatter_add(1, hist, rep)
        return base + seen * F.softplus(self.rep_item).view(1, -1)

    def scores(self, hist: torch.Tensor) -> torch.Tensor:
        """Full [B, N] scores (training and FP32 reference)."""
        return self.table.score(self.user(hist)) + self.extra(hist)

    def forward(self, hist: torch.Tensor, exclude: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.user(hist)
        extra = self.extra(hist).scatter(1, exclude, NEG)
        if self.pq is None:
            vals, idx = torch.topk(self.table.score(u) + extra, self.top_k, dim=1)
            return idx, vals
        _, short = torch.topk(self.pq.score(u, hist) + extra, self.shortlist, dim=1)
        exact = (u.unsqueeze(1) * self.table.rows(short)).sum(-1) + extra.gather(1, short)
        vals, pos = torch.topk(exact, self.top_k, dim=1)
        return short.gather(1, pos), vals


def table_weight(model: TwoTower) -> torch.Tensor:
    t = model.table
    if isinstance(t, Int8Table):
        return t.qweight.float() * t.scale.float()
    return t.weight.detach().float()


def with_tables(model: TwoTower, kind: str) -> tuple[TwoTower, dict[str, Any]]:
    """A copy whose retrieval table (and history embedding, for INT8) is stored as ``fp16`` or ``int8``."""
    m = copy.deepcopy(model)
    w = table_weight(model)
    fp32_bytes = w.numel() * 4
    if kind == "fp16":
        m.table = Fp16Table(w)
        notes = {"item_table": "fp16"}
    else:
        m.table = Int8Table(w)
        if isinstance(m.inp, nn.Embedding):
            m.inp = RowwiseInt8Embedding(m.inp.weight)
        notes = {"item_table": "row-wise int8, fp16 scale", "history_embedding": "row-wise int8, fp16 scale"}
    tb = m.table.table_bytes()
    return m, {
        **notes,
        "item_table_bytes": tb,
        "item_table_fp32_bytes": fp32_bytes,
        "item_table_compression": round(fp32_bytes / tb, 3),
    }


def with_pq(model: TwoTower, m_sub: int, c: int, shortlist: int, seed: int) -> tuple[TwoTower, dict[str, Any]]:
    """A copy that shortlists with PQ scores and re-scores the shortlist exactly with its table."""
    m = copy.deepcopy(model)
    m.pq = PQIndex(table_weight(model), m_sub, c, seed)
    m.shortlist = shortlist
    return m, {
        "pq": f"{m_sub} sub-spaces x {c} centroids (k-means), uint8 codes",
        "pq_index_bytes": m.pq.index_bytes(),
        "shortlist": shortlist,
        "rescoring": "exact inner product with the item table",
    }
