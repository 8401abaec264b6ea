"""The serving half of in-graph CTR featurization: request rows -> the two raw arrays the graph takes.

Kept apart from :mod:`compress.ctr.feature_graph` so the server imports numpy only (no ``onnx``). Values are
canonicalised exactly as :func:`app.tasks.ctr.features.cat_key` / :func:`app.tasks.ctr.features.dense_value` do; the lookups,
``log1p`` and standardisation happen inside the graph. Why ``dense_raw`` is float64 rather than float32:
counts above 2**24, fractional values and values beyond float32's range would otherwise change before
``log1p`` and no longer match the reference exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any, Protocol

import numpy as np

from app.tasks.ctr.features import cat_key, raw_dense

DENSE_RAW = "dense_raw"  # graph input: float64 [N, D], NaN = missing
CAT_RAW = "cat_raw"  # graph input: string [N, C], "" = missing
RAW_MODEL_FILE = "model_raw.onnx"  # featurization + model, published beside model.onnx
RAW_MODEL_ROLE = "raw_model"  # its role among the manifest's aux_files
_NUMBER_TYPES = {int, float, type(None)}
_SCALAR_TYPES = {str, int, float, type(None)}


class Featurizer(Protocol):
    """What the CTR task needs of a version's pre-processing state: the project's fitted ``CtrFeaturizer`` or an
    imported model's ``VocabFeaturizer``."""

    @property
    def dense_columns(self) -> list[str]: ...

    @property
    def categorical_columns(self) -> list[str]: ...

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Row dicts -> the model's input tensors (the reference path)."""
        ...


_SPACE = re.compile(r"\s")  # exactly the characters str.strip() removes
_ASCII_SPACE = [c for c in map(chr, range(128)) if c.isspace()]


def _dense_matrix(flat: list[Any], n: int, columns: Sequence[str]) -> np.ndarray:
    """Row-major JSON numbers/None -> float64 [N, D]; anything else takes the checked per-value path."""
    if set(map(type, flat)) <= _NUMBER_TYPES:
        try:
            x = np.array(flat, dtype=np.float64)  # None -> NaN
        except OverflowError:  # an int beyond float64: let the per-value path name it
            x = np.array([np.inf])
        if not np.isinf(x).any():
            return x.reshape(n, len(columns))
    d = len(columns)
    return np.array([raw_dense(v, columns[i % d]) for i, v in enumerate(flat)], dtype=np.float64).reshape(n, d)


def cat_texts(flat: list[Any]) -> list[Any]:
    """``cat_key`` over row-major values with missing as ``""``; canonical strings (the norm) are kept as is.

    C-level passes decide: if every value is a string and none holds whitespace, nothing needs stripping.
    """
    try:
        joined = "".join(flat)  # TypeError unless every value is a string
    except TypeError:
        return [cat_key(v) or "" for v in flat]
    return [cat_key(v) or "" for v in flat] if has_space(joined) else flat


def has_space(text: str) -> bool:
    """Whether ``text`` holds a character ``str.strip()`` removes."""
    if text.isascii():  # a few memchr scans beat one regex pass over the whole text
        return any(ch in text for ch in _ASCII_SPACE)
    return _SPACE.search(text) is not None


def raw_arrays(records: Sequence[Mapping[str, Any]], featurizer: Featurizer) -> dict[str, np.ndarray]:
    """Request rows -> ``{"dense_raw": float64 [N, D] (NaN = missing), "cat_raw": object str [N, C] ("" = missing)}``.

    Raises :class:`FeatureError` for the values the reference rejects (text or booleans in a dense field,
    infinities), so both paths answer bad input the same way. Absent fields are missing.
    """
    dcols, ccols = featurizer.dense_columns, featurizer.categorical_columns
    dense: list[Any] = []
    cat: list[Any] = []
    empty = repeat("")
    for r in records:
        dense += map(r.get, dcols)  # absent -> None (NaN)
        cat += map(r.get, ccols, empty)  # absent -> ""
    n = len(records)
    return {
        DENSE_RAW: _dense_matrix(dense, n, dcols),
        CAT_RAW: np.array(cat_texts(cat), dtype=object).reshape(n, len(ccols)),
    }


def request_arrays(
    context: Mapping[str, Any], features: Sequence[Mapping[str, Any]], featurizer: Featurizer
) -> dict[str, np.ndarray] | None:
    """One request's raw arrays straight from its parts: row i = ``context`` overlaid by ``features[i]``, exactly
    as :func:`raw_arrays` of the merged rows, without building a dict per row.

    Only for values that need no per-value judgement: every dense value a JSON number or null (finite, within
    float64), every categorical value a string, number or null. Anything else returns None so the caller takes
    the checked per-row path, which refuses or accepts it with its own message. Names are not checked here.
    """
    dcols, ccols = featurizer.dense_columns, featurizer.categorical_columns
    dctx = [context.get(c) for c in dcols]  # a candidate's own field wins, even an explicit null
    cctx = [context.get(c, "") for c in ccols]
    dense: list[Any] = []
    cat: list[Any] = []
    for f in features:
        dense += map(f.get, dcols, dctx)
        cat += map(f.get, ccols, cctx)
    if not set(map(type, dense)) <= _NUMBER_TYPES:
        return None
    try:  # all strings (the norm): one join proves it, no pass over the types
        texts = [cat_key(v) or "" for v in cat] if has_space("".join(cat)) else cat
    except TypeError:
        if not set(map(type, cat)) <= _SCALAR_TYPES:
            return None
        texts = [cat_key(v) or "" for v in cat]
    try:
        x = np.array(dense, dtype=np.float64)  # None -> NaN
    except OverflowError:
        return None
    if np.isinf(x).any():
        return None
    n = len(features)
    return {DENSE_RAW: x.reshape(n, len(dcols)), CAT_RAW: np.array(texts, dtype=object).reshape(n, len(ccols))}
