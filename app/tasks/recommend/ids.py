"""Compact per-item strings for a serving worker: item ids (looked up both ways) and titles.

Why: a catalogue of 10^6 items held as Python strings plus an ``id -> index`` dict costs ~136 MiB per worker
process, more than the compressed ANN index it serves. Here the ids are one fixed-width bytes array (index
order) with a sorted copy and its permutation, so ``id -> index`` is a binary search (``np.searchsorted``) and
``index -> id`` an array read; titles are one UTF-8 blob with offsets. Only the ids a request names or an
answer returns are ever turned into Python strings. 10^6 ids of 11 characters take ~26 MiB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Sequence

import numpy as np

UNKNOWN = -1
CHUNK = 1 << 16
"""Items converted per numpy call while building: each call holds the GIL, and a worker's event loop (its
liveness beat) must keep running while a version loads in the loader thread."""
LOG = logging.getLogger(__name__)


def _encode(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")  # a lone surrogate from JSON is an unknown id, never an error


def duplicates(items: Sequence[str], limit: int = 5) -> list[str]:
    """Up to ``limit`` ids listed more than once (index 0, the padding entry, excluded)."""
    seen: set[str] = set()
    dup: list[str] = []
    for it in items[1:]:
        if it in seen and it not in dup:
            dup.append(it)
            if len(dup) == limit:
                break
        seen.add(it)
    return dup


class IdMap:
    """Catalogue index <-> item id. Index 0 is the padding entry ``""`` and is never a lookup's answer.

    With duplicate ids (refused at publish, see :func:`duplicates`) a lookup answers the highest index, as a
    ``{id: index}`` dict built in index order would."""

    def __init__(self, items: Sequence[str]) -> None:
        enc = [_encode(s) for s in items]
        if any(e.endswith(b"\0") for e in enc):
            raise ValueError("item ids must not end with a NUL character")
        self.width = max([1, *(len(e) for e in enc)])
        self.ids = np.empty(len(enc), f"S{self.width}")
        for a in range(0, len(enc), CHUNK):
            self.ids[a : a + CHUNK] = enc[a : a + CHUNK]
        self.order = np.argsort(self.ids, kind="stable").astype(np.int32 if len(enc) < 2**31 else np.int64)
        self.sorted = self.ids[self.order]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.order.nbytes + self.sorted.nbytes)

    def __getitem__(self, index: int) -> str:
        return bytes(self.ids[index]).decode("utf-8", "surrogatepass")

    def indices(self, keys: Sequence[str]) -> np.ndarray:
        """Catalogue index of each key (int64), :data:`UNKNOWN` where the catalogue has no such id."""
        if not len(keys):
            return np.zeros(0, np.int64)
        enc = [_encode(k) for k in keys]
        fits = np.fromiter((len(e) <= self.width and not e.endswith(b"\0") for e in enc), bool, len(enc))
        q = np.array([e if f else b"" for e, f in zip(enc, fits, strict=True)], dtype=self.ids.dtype)
        pos = np.searchsorted(self.sorted, q, side="right") - 1  # the last equal entry: the highest index
        at = np.maximum(pos, 0)
        out = np.where(fits & (pos >= 0) & (self.sorted[at] == q), self.order[at].astype(np.int64), UNKNOWN)
        out[out == 0] = UNKNOWN  # "" is the padding entry, not an item
        return out

    def get(self, key: str, default: int = UNKNOWN) -> int:
        got = int(self.indices([key])[0])
        return default if got == UNKNOWN else got

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) != UNKNOWN


class StringColumn:
    """Strings by index in one UTF-8 blob with offsets (titles: read only for the items an answer returns)."""

    def __init__(self, strings: Sequence[str]) -> None:
        enc = [_encode(s) for s in strings]
        ends = np.cumsum([len(e) for e in enc], dtype=np.int64)
        wide = len(ends) and ends[-1] >= 2**31
        self.offsets = np.zeros(len(enc) + 1, np.int64 if wide else np.int32)
        self.offsets[1:] = ends
        self.blob = np.empty(int(ends[-1]) if len(ends) else 0, np.uint8)
        for a in range(0, len(enc), CHUNK):
            part = b"".join(enc[a : a + CHUNK])
            self.blob[self.offsets[a] : self.offsets[a] + len(part)] = np.frombuffer(part, np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return int(self.offsets.nbytes + self.blob.nbytes)

    def __getitem__(self, index: int) -> str:
        return self.blob[self.offsets[index] : self.offsets[index + 1]].tobytes().decode("utf-8", "surrogatepass")


def release_freed_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Why: ``rec.json`` is parsed into one Python string per item and title before the compact columns are built;
    freeing those strings leaves their pages in the process's heap (about 70 MiB at 10^6 items) unless trimmed."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim with
        trim = None
    if trim is not None:
        trim(0)
    else:
        LOG.debug("malloc_trim unavailable: freed catalogue strings stay in the heap")
