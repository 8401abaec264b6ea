"""Search ranking text processing: one code path for training, evaluation and serving (``search-v1``).

A (query, product) pair is ``[CLS] query [SEP] product [SEP]`` within ``max_tokens``: the query keeps at most
``max_query_tokens`` tokens and the product text fills the rest. Product text is the version's ``text_fields``
joined in order (title first, so truncation drops the long tail: bullets, description). Catalogue products are
tokenised once, at load time, with :meth:`PairEncoder.products`; inline products go through the same function,
so an id-only candidate and the same product sent with its text get identical inputs and scores.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from app.tasks.ids import canonical

KIND = "search"
CODE_VERSION = "search-pre-1"
STATE_FILE = "search.json"
TOKENIZER_FILE = "tokenizer.json"
CATALOGUE_FILE = "catalogue.jsonl.gz"
VECTORS_FILE = "product_vectors.npz"  # bi-encoder versions: catalogue vectors, INT8 with a scale per row
CROSS, BI = "cross_encoder", "bi_encoder"
CLS_ID, SEP_ID, PAD_ID = 101, 102, 0
CHARS_PER_TOKEN_CAP = 12  # product text is cut to max_tokens * this many chars before tokenising (it is cut anyway)
_SPACE = re.compile(r"\s+")


@dataclass
class SearchState:
    """The version's ranking settings (``search.json``): text fields, token and character limits."""

    text_fields: list[str]
    max_tokens: int = 64
    max_query_tokens: int = 16
    max_query_chars: int = 200
    max_text_chars: int = 20000
    relevant_gain: float = 1.0
    mode: str = CROSS
    """``cross_encoder``: one pair per row; ``bi_encoder``: one text per row -> a unit vector (dot-product scores)."""
    kind: str = KIND
    code_version: str = CODE_VERSION
    notes: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> SearchState:
        raw = json.loads(path.read_text())
        if canonical(str(raw.get("kind"))) != KIND:
            raise ValueError(f"{path}: search state kind {raw.get('kind')!r} is not {KIND!r}")
        return cls(**raw)


def field_text(value: Any) -> str:
    """One field as text: lists (category paths) joined with ' > ', None/NaN empty, whitespace collapsed."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, (list, tuple)):
        return " > ".join(field_text(v) for v in value if field_text(v))
    return _SPACE.sub(" ", str(value)).strip()


def product_text(fields: Mapping[str, Any], text_fields: Sequence[str]) -> str:
    """The product's text as the model reads it: the non-empty ``text_fields`` in order, ' | '-joined."""
    return " | ".join(t for t in (field_text(fields.get(f)) for f in text_fields) if t)


def write_catalogue(path: Path, products: Iterable[tuple[str, Mapping[str, Any]]], text_fields: Sequence[str]) -> int:
    """gzip JSON lines ``{"product_id", **text fields}``; returns the product count."""
    n = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as f:
        for pid, fields in products:
            f.write(json.dumps({"product_id": pid, **{k: fields.get(k) for k in text_fields}}, ensure_ascii=False))
            f.write("\n")
            n += 1
    return n


def read_catalogue(path: Path, text_fields: Sequence[str]) -> tuple[list[str], list[str]]:
    """(product ids, product texts) of a catalogue file."""
    ids, texts = [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            ids.append(str(row["product_id"]))
            texts.append(product_text(row, text_fields))
    return ids, texts


class PairEncoder:
    """The version's WordPiece tokenizer with the pair layout and limits (no built-in padding or truncation)."""

    def __init__(self, tokenizer: Any, max_tokens: int = 64, max_query_tokens: int = 16) -> None:
        if max_tokens < max_query_tokens + 4:
            raise ValueError(
                f"max_tokens {max_tokens} leaves no room for product text after {max_query_tokens} query tokens"
            )
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer, self.max_tokens, self.max_query_tokens = tokenizer, max_tokens, max_query_tokens

    @classmethod
    def from_file(cls, path: Path, max_tokens: int = 64, max_query_tokens: int = 16) -> Self:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), max_tokens, max_query_tokens)

    @classmethod
    def for_state(cls, tokenizer_path: Path, state: SearchState) -> Self:
        return cls.from_file(tokenizer_path, state.max_tokens, state.max_query_tokens)

    def _tokens(self, texts: Sequence[str], cap: int, chars: int) -> tuple[list[list[int]], list[bool]]:
        encs = self.tokenizer.encode_batch([t[:chars] for t in texts], add_special_tokens=False)
        ids = [list(e.ids) for e in encs]
        return [x[:cap] for x in ids], [len(x) > cap or len(t) > chars for x, t in zip(ids, texts, strict=True)]

    def queries(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Query tokens (no specials), cut to ``max_query_tokens``; and whether each was cut."""
        return self._tokens(texts, self.max_query_tokens, self.max_query_tokens * CHARS_PER_TOKEN_CAP)

    def products(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Product tokens (no specials), cut to what the shortest query leaves; and whether each was cut."""
        cap = self.max_tokens - 3
        return self._tokens(texts, cap, cap * CHARS_PER_TOKEN_CAP)

    def pair(self, query: Sequence[int], product: Sequence[int]) -> tuple[list[int], bool]:
        """``[CLS] q [SEP] p [SEP]`` within ``max_tokens``; True if the product text had to be cut further."""
        room = self.max_tokens - 3 - len(query)
        return [CLS_ID, *query, SEP_ID, *product[:room], SEP_ID], len(product) > room


def pad_pairs(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int64 [N, longest in this batch]."""
    from app.tasks.text import pad_batch

    return pad_batch(seqs, PAD_ID)


def single_seq(tokens: Sequence[int]) -> list[int]:
    """``[CLS] tokens [SEP]``: a bi-encoder's one-text row (tokens already cut by :class:`PairEncoder`)."""
    return [CLS_ID, *tokens, SEP_ID]


def quantize_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric INT8 per row: ``(int8 [N, D], fp32 scale [N])`` with ``vectors ~= int8 * scale[:, None]``."""
    v = np.asarray(vectors, np.float32)
    scale = np.maximum(np.abs(v).max(axis=1), 1e-12) / 127.0
    q = np.clip(np.rint(v / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def dot_scores(query: np.ndarray, q8: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Dot products of one query vector with INT8 rows (the served bi-encoder score), float64 [N]."""
    return (q8.astype(np.float32) @ np.asarray(query, np.float32)).astype(np.float64) * scale.astype(np.float64)


def write_vectors(path: Path, ids: Sequence[str], vectors: np.ndarray) -> None:
    """Quantise and store the catalogue's product vectors (``ids``, ``q8``, ``scale``)."""
    q8, scale = quantize_rows(vectors)
    np.savez(path, ids=np.asarray(ids, dtype=str), q8=q8, scale=scale)


def read_vectors(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(product ids, int8 vectors [N, D], fp32 scales [N]) of a version's vectors file."""
    with np.load(path, allow_pickle=False) as z:
        return [str(i) for i in z["ids"]], z["q8"], z["scale"]
