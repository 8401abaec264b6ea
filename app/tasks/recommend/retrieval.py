"""Approximate retrieval for ``/v1/recommend`` at catalogue scale: a faiss index shortlists, the INT8 table re-scores.

The dense graph scores every item per request (one GEMM over N rows). An ANN version instead ships

* ``model.onnx`` — the user tower only: ``history`` [B, L] -> ``user`` [B, D'] (the user vector, then a 1 for the
  item bias, zero-padded to D') and ``repeat`` [B, L] (the repeat term's weight of each history position);
* ``ann_index`` — a faiss index over the item vectors ``[v_i, bias_i, 0...]``, so an inner-product search ranks
  by ``u . v_i + bias_i`` (the model's score without the repeat term);
* ``ann_items`` — the row-wise INT8 item vectors (+ fp16 scales) and each item's repeat propensity.

One index search per batch returns a shortlist per row; the shortlist plus the row's history items (the repeat
term can lift them) are re-scored exactly, exclusions are dropped, and rows with fewer than ``k`` survivors are
searched again deeper (x4), ending at an exhaustive pass over the INT8 table, so the answer always holds exactly
``min(k, catalogue - excluded)`` items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

INDEX_ROLE, ITEMS_ROLE = "ann_index", "ann_items"
NEG = np.float32(-1e9)


@dataclass
class ItemTable:
    """Row-wise INT8 item vectors (augmented with the bias column) and the repeat propensity per item."""

    qweight: np.ndarray  # int8 [N, D']
    scale: np.ndarray  # float32 [N]
    repeat_item: np.ndarray  # float32 [N]: softplus of the learned per-item repeat propensity

    @classmethod
    def quantize(cls, vectors: np.ndarray, repeat_item: np.ndarray) -> ItemTable:
        scale = np.maximum(np.abs(vectors).max(1), 1e-8).astype(np.float32) / 127.0
        scale = scale.astype(np.float16).astype(np.float32)  # stored fp16: the scores use what is stored
        safe = np.where(scale > 0, scale, 1.0)[:, None]  # an all-zero row (no vector) stays zero
        q = np.clip(np.round(vectors / safe), -127, 127).astype(np.int8)
        return cls(q, scale, repeat_item.astype(np.float32))

    def save(self, path: Path) -> None:
        with path.open("wb") as f:
            np.savez(f, qweight=self.qweight, scale=self.scale.astype(np.float16), repeat_item=self.repeat_item)

    @classmethod
    def load(cls, path: Path) -> ItemTable:
        with np.load(path) as z:
            return cls(z["qweight"], z["scale"].astype(np.float32), z["repeat_item"].astype(np.float32))

    def nbytes(self) -> int:
        return int(self.qweight.nbytes + self.scale.size * 2 + self.repeat_item.nbytes)


def augment(vectors: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``[v, bias]`` padded with zeros to a multiple of 8 columns (PQ sub-spaces must divide the width)."""
    n, d = vectors.shape
    width = -(-(d + 1) // 8) * 8
    out = np.zeros((n, width), np.float32)
    out[:, :d], out[:, d] = vectors, bias
    return out


def set_threads(n: int) -> None:
    """faiss's OpenMP pool: one thread per worker process (the service runs one worker per core)."""
    import faiss  # type: ignore[import-not-found,unused-ignore]

    faiss.omp_set_num_threads(n)


def read_index(path: Path, params: dict[str, Any]) -> Any:
    """Load a faiss index and apply its search-time parameters (``nprobe``, ``efSearch``) from the recipe."""
    import faiss

    index = faiss.read_index(str(path))
    apply_params(index, params)
    return index


def apply_params(index: Any, params: dict[str, Any]) -> None:
    import faiss

    if "nprobe" in params:
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
    if "ef_search" in params:
        hnsw: Any = faiss.downcast_index(index)
        hnsw.hnsw.efSearch = int(params["ef_search"])


class AnnRetrieval:
    """Search + exact re-scoring + filtering for one loaded version (thread-safe for reads: faiss search is)."""

    def __init__(self, index: Any, table: ItemTable, shortlist: int) -> None:
        self.index, self.table, self.shortlist = index, table, shortlist
        self.n = len(table.qweight)

    @classmethod
    def load(cls, index_path: Path, items_path: Path, params: dict[str, Any]) -> AnnRetrieval:
        table = ItemTable.load(items_path)
        index = read_index(index_path, params)
        if index.ntotal != len(table.qweight):
            raise ValueError(f"{index_path.name} holds {index.ntotal} items, {items_path.name} {len(table.qweight)}")
        return cls(index, table, int(params.get("shortlist", 256)))

    def search(
        self, user: np.ndarray, repeat: np.ndarray, history: np.ndarray, exclude: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` ids and scores per row; ``exclude`` [B, E] ids never returned (0 = padding, always dropped).

        Rows that end with fewer than ``k`` valid items hold id 0 and score -1e9 in the missing places (the
        catalogue minus exclusions is smaller than ``k``)."""
        user = np.ascontiguousarray(user, np.float32)
        b = len(user)
        ids = np.zeros((b, k), np.int64)
        scores = np.full((b, k), NEG, np.float32)
        todo = np.arange(b)
        depth = min(self.n, self.shortlist + exclude.shape[1])
        while len(todo):
            if depth * 4 > self.n:  # deep enough that a full pass over the INT8 table is cheaper and exact
                ids[todo], scores[todo] = self._exhaustive(user[todo], repeat[todo], history[todo], exclude[todo], k)
                break
            short = np.asarray(self.index.search(user[todo], depth)[1], np.int64)
            got_ids, got_scores, full = self._rescore(short, user[todo], repeat[todo], history[todo], exclude[todo], k)
            ids[todo], scores[todo] = got_ids, got_scores
            todo = todo[~full]
            depth *= 4
        return ids, scores

    def _rescore(
        self,
        short: np.ndarray,
        user: np.ndarray,
        repeat: np.ndarray,
        history: np.ndarray,
        exclude: np.ndarray,
        k: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact scores of shortlist + history; returns ids, scores and which rows have ``k`` valid items."""
        pool = np.sort(np.concatenate([np.maximum(short, 0), history], axis=1), axis=1)  # -1 (no result) -> 0
        invalid = pool <= 0
        invalid[:, 1:] |= pool[:, 1:] == pool[:, :-1]  # duplicates (history items also in the shortlist)
        for r in range(len(pool)):
            ex = exclude[r]
            if ex.any():
                invalid[r] |= np.isin(pool[r], ex[ex > 0])
        t = self.table
        s = np.einsum("bpd,bd->bp", t.qweight[pool].astype(np.float32), user) * t.scale[pool]
        rep = np.zeros_like(s)
        for p in range(history.shape[1]):
            h = history[:, p : p + 1]
            rep += (pool == h) * (h > 0) * repeat[:, p : p + 1]
        s += rep * t.repeat_item[pool]
        s[invalid] = NEG
        valid = (~invalid).sum(1)
        kk = min(k, pool.shape[1])
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < pool.shape[1] else np.argsort(-s, axis=1)[:, :kk]
        order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        out_ids = np.zeros((len(pool), k), np.int64)
        out_scores = np.full((len(pool), k), NEG, np.float32)
        out_ids[:, :kk] = np.take_along_axis(pool, top, 1)
        out_scores[:, :kk] = np.take_along_axis(s, top, 1)
        out_ids[out_scores <= NEG] = 0
        return out_ids, out_scores, valid >= k

    def _exhaustive(
        self, user: np.ndarray, repeat: np.ndarray, history: np.ndarray, exclude: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every item scored with the INT8 table (chunked GEMM): the last resort for heavily filtered rows."""
        t, b = self.table, len(user)
        s = np.empty((b, self.n), np.float32)
        step = 1 << 16
        for a in range(0, self.n, step):
            s[:, a : a + step] = (t.qweight[a : a + step].astype(np.float32) @ user.T).T * t.scale[a : a + step]
        rows = np.arange(b)
        for p in range(history.shape[1]):
            h = history[:, p]
            np.add.at(s, (rows, h), np.where(h > 0, repeat[:, p] * t.repeat_item[h], 0.0))
        s[:, 0] = NEG
        for r in range(b):
            s[r, exclude[r]] = NEG
        kk = min(k, self.n)
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < self.n else np.argsort(-s, axis=1)
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable"), 1)
        ids = np.zeros((b, k), np.int64)
        scores = np.full((b, k), NEG, np.float32)
        ids[:, :kk], scores[:, :kk] = top, np.take_along_axis(s, top, 1)
        ids[scores <= NEG] = 0
        return ids, scores
