"""The columnar ``/v1/ads/ctr`` body (:class:`CtrColumnsRequest`): decoded by orjson, checked and converted one
column at a time, never one object per candidate.

The row body (:class:`CtrRequest`) keeps its pydantic parse; a body is columnar when its top-level object has a
``columns`` key. Values are judged as the row path judges them (same codes, ``where: what`` messages): unknown
names are ``unknown_feature``, a value the featurizer would refuse or a non-scalar is ``invalid_feature``, a
column whose length differs from ``ad_ids`` is ``invalid_request``. The arrays are those
:func:`app.tasks.ctr.raw.raw_arrays` builds from the equivalent rows, so both bodies get the same scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from app.errors import InvalidInput, names_hint
from app.tasks.base import parse_json, validate_doc
from app.tasks.ctr.features import FeatureError, cat_key, raw_dense
from app.tasks.ctr.raw import CAT_RAW, DENSE_RAW, Featurizer, cat_texts, has_space
from app.tasks.ctr.schemas import CtrColumnsRequest, CtrRequest

_NUMBER_TYPES = {int, float, type(None)}
_SCALAR_TYPES = {str, int, float, type(None)}
_NULL_TO_EMPTY: dict[Any, Any] = {None: ""}
_MARK = b'"columns"'


def parse_body(body: bytes) -> CtrRequest | CtrColumnsRequest:
    """Either body of ``POST /v1/ads/ctr``: malformed JSON is 400 ``invalid_json``, a wrong document 422."""
    if _MARK not in body:  # a row body never decodes twice
        return parse_json(CtrRequest, body)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"the body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(doc, dict) or "columns" not in doc:  # "columns" was a value, not the key
        return parse_json(CtrRequest, body)
    return validate_doc(CtrColumnsRequest, doc)


def _invalid(where: str, message: str) -> InvalidInput:
    return InvalidInput(f"{where}: {message}", code="invalid_feature", status=422)


def dense_column(values: Sequence[Any], name: str) -> np.ndarray:
    """JSON numbers/null -> float64 (NaN = missing) in one conversion; anything else is judged value by value by
    :func:`raw_dense`, the row path's judge (a numeric string is a number, a boolean or text is refused)."""
    if set(map(type, values)) <= _NUMBER_TYPES:
        try:
            x = np.array(values, dtype=np.float64)  # None -> NaN
        except OverflowError:  # beyond float64: named by the per-value path
            pass
        else:
            if not np.isinf(x).any():
                return x
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if type(v) not in _SCALAR_TYPES:
            raise _invalid(f"columns.{name}[{i}]", f"{v!r} is not a scalar")
        try:
            out[i] = raw_dense(v, name)
        except FeatureError as e:
            raise _invalid(f"columns.{name}[{i}]", str(e)) from None
    return out


def cat_column(values: list[Any], name: str) -> list[Any]:
    """Strings, numbers or null -> canonical category texts ("" = missing), as :func:`cat_key` makes them."""
    kinds = set(map(type, values))
    if not kinds <= _SCALAR_TYPES:
        i = next(i for i, v in enumerate(values) if type(v) not in _SCALAR_TYPES)
        raise _invalid(f"columns.{name}[{i}]", f"{values[i]!r} is not a scalar")
    try:
        return cat_texts(values)
    except (ValueError, TypeError) as e:  # e.g. an int too long for str()
        raise _invalid(f"columns.{name}", str(e)) from None


def _dense_matrix(given: list[list[Any] | None], ctx: list[Any], names: list[str], n: int) -> np.ndarray:
    """float64 [N, D] from the dense columns (None: the context's value for all): one conversion for the usual
    all-numbers case, else column by column so the refusal names its column and candidate."""
    try:
        lists = [[raw_dense(v, c)] * n if col is None else col for col, v, c in zip(given, ctx, names, strict=True)]
    except FeatureError as e:  # checked before by check_fields; kept for a direct caller
        raise _invalid("context", str(e)) from None
    if all(set(map(type, col)) <= _NUMBER_TYPES for col in given if col is not None):
        try:
            x = np.array(lists, dtype=np.float64).reshape(len(names), n)  # None -> NaN
        except OverflowError:
            pass
        else:
            if not np.isinf(x).any():
                return np.ascontiguousarray(x.T)
    x = np.empty((len(names), n), dtype=np.float64)
    for j, (col, c) in enumerate(zip(lists, names, strict=True)):
        x[j] = dense_column(col, c)
    return np.ascontiguousarray(x.T)


def _cat_matrix(given: list[list[Any] | None], ctx: list[Any], names: list[str], n: int) -> np.ndarray:
    """object str [N, C] from the categorical columns (None: the context's value for all): strings and nulls (the
    usual columns) are converted in C-level passes over all columns at once, anything else (numbers, refused
    values) column by column (:func:`cat_column`)."""
    flat: list[Any] = []
    for col, v in zip(given, ctx, strict=True):
        if col is None:
            flat += [cat_key(v) or ""] * n
        else:
            flat += col
    try:  # the usual columns, strings and nulls: null -> "", then one join checks them all at C speed
        texts: list[Any] = list(map(_NULL_TO_EMPTY.get, flat, flat))  # TypeError: an unhashable value (list, object)
        texts = [cat_key(v) or "" for v in texts] if has_space("".join(texts)) else texts  # TypeError: not text
    except TypeError:
        texts = []
        for col, c in zip(given, names, strict=True):
            texts += [cat_key(v) or ""] * n if col is None else cat_column(col, c)
    return np.ascontiguousarray(np.array(texts, dtype=object).reshape(len(names), n).T)


def column_arrays(req: CtrColumnsRequest, featurizer: Featurizer, known: frozenset[str]) -> dict[str, np.ndarray]:
    """The request's raw arrays, ``{"dense_raw": float64 [N, D], "cat_raw": object str [N, C]}``, one column at a
    time; a field without a column takes the context's value for every candidate. ``req.context`` must have been
    checked already (:func:`app.tasks.ctr.task.check_fields`)."""
    n, columns = len(req.ad_ids), req.columns
    if not known.issuperset(columns):
        unknown = sorted(set(columns) - known)[:10]
        hint = names_hint(unknown, known, "valid features")
        raise InvalidInput(f"columns: unknown features {unknown}; {hint}", code="unknown_feature", status=422)
    for name, given in columns.items():
        if len(given) != n:
            raise InvalidInput(
                f"columns.{name}: {len(given)} values for {n} ad_ids", code="invalid_request", status=422
            )
    dcols, ccols, ctx = featurizer.dense_columns, featurizer.categorical_columns, req.context
    dense = _dense_matrix([columns.get(c) for c in dcols], [ctx.get(c) for c in dcols], dcols, n)
    cat = _cat_matrix([columns.get(c) for c in ccols], [ctx.get(c) for c in ccols], ccols, n)
    return {DENSE_RAW: dense, CAT_RAW: cat}


def column_rows(req: CtrColumnsRequest) -> list[Mapping[str, Any]]:
    """One row dict per candidate (context overlaid by its column values), for the Python featurizer and drift."""
    if not req.columns:
        return [dict(req.context) for _ in req.ad_ids]
    names = list(req.columns)
    return [
        {**req.context, **dict(zip(names, values, strict=True))} for values in zip(*req.columns.values(), strict=True)
    ]


def to_columns(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Client side: a row body of ``/v1/ads/ctr`` as the equivalent columnar body (same scores). A field some
    candidate gives becomes a column; a candidate without it gets the context's value there (or null)."""
    context: dict[str, Any] = dict(doc.get("context") or {})
    candidates = doc["candidates"]
    names = list(dict.fromkeys(k for c in candidates for k in c.get("features") or {}))
    feats = [c.get("features") or {} for c in candidates]
    out: dict[str, Any] = {
        "context": {k: v for k, v in context.items() if k not in names},
        "ad_ids": [c["ad_id"] for c in candidates],
        "columns": {k: [f.get(k, context.get(k)) for f in feats] for k in names},
    }
    if doc.get("model_version") is not None:
        out["model_version"] = doc["model_version"]
    return out
