"""Feature vocabularies of a CTR model trained elsewhere: raw log fields -> that model's own input tensors.

A model imported with ``compress import --vocab FILE`` comes with the pre-processing its trainer used, written as
one JSON document (format ``shopinfer-ctr-vocab-1``, documented in docs/compression.md)::

    {"format": "shopinfer-ctr-vocab-1",
     "inputs": {"X": ["C1", ..., "C26", "I1", ..., "I13"]},          # model input -> its columns, in order
     "categorical": {"C1": {"index": {"68fd1e64": 1, ...}, "missing": 0, "unseen": 0}, ...},
     "dense": {"I1": {"fill": 0.0, "clip_min": 0.0, "log1p": true, "mean": 0.0, "std": 1.0}, ...}}

Dense: missing -> ``fill`` (raw units), then ``max(x, clip_min)``, then ``log1p`` if set, then
``(x - mean) / std``, in float64. Categorical: the canonical value (:func:`cat_key`) looked up in ``index``;
missing -> ``missing``, anything else absent -> ``unseen``. Each input's columns are cast to the input's dtype
(``dtypes``, filled in by ``compress`` from the model).

This class is the reference (Python path, and what the in-graph featurization is checked against at publish);
:mod:`compress.ctr.vocab_graph` re-expresses it as ONNX nodes in front of the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.tasks.ctr.features import CtrFeaturizer, cat_key, raw_dense

FORMAT = "shopinfer-ctr-vocab-1"
CODE_VERSION = "ctr-vocab-1"
DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


@dataclass(frozen=True)
class DenseTransform:
    fill: float = 0.0
    clip_min: float | None = None
    log1p: bool = False
    mean: float = 0.0
    std: float = 1.0


@dataclass(frozen=True)
class Vocabulary:
    index: dict[str, int]
    missing: int = 0
    unseen: int = 0


@dataclass
class VocabFeaturizer:
    """Parsed vocabulary document; same surface as :class:`CtrFeaturizer` for the CTR task."""

    inputs: dict[str, list[str]]
    categorical: dict[str, Vocabulary]
    dense: dict[str, DenseTransform]
    dtypes: dict[str, str] = field(default_factory=dict)

    @property
    def dense_columns(self) -> list[str]:
        return list(self.dense)

    @property
    def categorical_columns(self) -> list[str]:
        return list(self.categorical)

    def columns(self, name: str) -> list[str]:
        return self.inputs[name]

    def dtype(self, name: str) -> str:
        return self.dtypes.get(name, "FP32")

    # ---- transforming ----
    def dense_matrix(self, raw: np.ndarray) -> np.ndarray:
        """float64 [N, D] raw values (NaN = missing) -> transformed float64 [N, D], column by column."""
        out = np.empty_like(raw)
        for j, t in enumerate(self.dense.values()):
            x = np.where(np.isnan(raw[:, j]), t.fill, raw[:, j])
            if t.clip_min is not None:
                x = np.maximum(x, t.clip_min)
            if t.log1p:
                x = np.log1p(x)
            out[:, j] = (x - t.mean) / t.std
        return out

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Row dicts (as a request carries them) -> ``{input name: array}`` in each input's column order and dtype."""
        n = len(records)
        dcols = self.dense_columns
        raw = np.array([raw_dense(r.get(c), c) for r in records for c in dcols], dtype=np.float64)
        dense = self.dense_matrix(raw.reshape(n, len(dcols)))
        values: dict[str, np.ndarray] = {c: dense[:, j] for j, c in enumerate(dcols)}
        for c, v in self.categorical.items():
            ids = []
            for r in records:
                key = cat_key(r.get(c))
                ids.append(v.missing if key is None else v.index.get(key, v.unseen))
            values[c] = np.array(ids, dtype=np.int64)
        out = {}
        for name, cols in self.inputs.items():
            dt = DTYPES[self.dtype(name)]
            out[name] = np.stack([values[c].astype(dt) for c in cols], axis=1) if n else np.empty((0, len(cols)), dt)
        return out

    # ---- persistence ----
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "inputs": self.inputs,
            "dtypes": {k: self.dtype(k) for k in self.inputs},
            "categorical": {
                c: {"index": v.index, "missing": v.missing, "unseen": v.unseen} for c, v in self.categorical.items()
            },
            "dense": {c: vars(t) for c, t in self.dense.items()},
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VocabFeaturizer:
        """Validate and parse; every problem is a ValueError naming the column and what was expected."""
        if d.get("format") != FORMAT:
            raise ValueError(f"vocabulary format is {d.get('format')!r}; expected {FORMAT!r}")
        extra = set(d) - {"format", "inputs", "dtypes", "categorical", "dense"}
        if extra:
            raise ValueError(f"unknown vocabulary keys {sorted(extra)}")
        inputs = _mapping(d.get("inputs"), "inputs")
        if not inputs:
            raise ValueError("'inputs' must map at least one model input to its columns")
        cat = {str(c): _vocabulary(c, v) for c, v in _mapping(d.get("categorical", {}), "categorical").items()}
        dense = {str(c): _dense(c, v) for c, v in _mapping(d.get("dense", {}), "dense").items()}
        both = sorted(set(cat) & set(dense))
        if both:
            raise ValueError(f"columns {both} are both categorical and dense")
        parsed: dict[str, list[str]] = {}
        for name, cols in inputs.items():
            if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
                raise ValueError(f"inputs.{name} must be a non-empty list of column names")
            unknown = [c for c in cols if c not in cat and c not in dense]
            if unknown:
                raise ValueError(f"inputs.{name}: columns {unknown} are neither in 'categorical' nor in 'dense'")
            parsed[str(name)] = list(cols)
        dtypes = {str(k): str(v) for k, v in _mapping(d.get("dtypes", {}), "dtypes").items()}
        bad = {k: v for k, v in dtypes.items() if v not in DTYPES or k not in parsed}
        if bad:
            raise ValueError(f"dtypes {bad}: each must name an input and be one of {sorted(DTYPES)}")
        return cls(parsed, cat, dense, dtypes)

    @classmethod
    def load(cls, path: Path) -> VocabFeaturizer:
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read the vocabulary JSON: {e}") from None
        return cls.from_dict(_mapping(doc, str(path)))


def _mapping(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(v).__name__}")
    return v


def _int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{where} must be an integer index, got {v!r}")
    return v


def _vocabulary(column: str, v: Any) -> Vocabulary:
    d = _mapping(v, f"categorical.{column}")
    extra = set(d) - {"index", "missing", "unseen"}
    if extra:
        raise ValueError(f"categorical.{column}: unknown keys {sorted(extra)} (index, missing, unseen)")
    index = _mapping(d.get("index"), f"categorical.{column}.index")
    if "" in index:
        raise ValueError(f"categorical.{column}.index: the empty string is the missing value; use 'missing'")
    parsed = {str(k): _int(i, f"categorical.{column}.index[{k!r}]") for k, i in index.items()}
    return Vocabulary(
        parsed,
        _int(d.get("missing", 0), f"categorical.{column}.missing"),
        _int(d.get("unseen", 0), f"categorical.{column}.unseen"),
    )


def _dense(column: str, v: Any) -> DenseTransform:
    d = _mapping(v, f"dense.{column}")
    extra = set(d) - {"fill", "clip_min", "log1p", "mean", "std"}
    if extra:
        raise ValueError(f"dense.{column}: unknown keys {sorted(extra)} (fill, clip_min, log1p, mean, std)")
    nums = {}
    for k in ("fill", "clip_min", "mean", "std"):
        x = d.get(k)
        if x is None:
            continue
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ValueError(f"dense.{column}.{k} must be a finite number, got {x!r}")
        nums[k] = float(x)
    if nums.get("std", 1.0) == 0:
        raise ValueError(f"dense.{column}.std must not be 0")
    log1p = d.get("log1p", False)
    if not isinstance(log1p, bool):
        raise ValueError(f"dense.{column}.log1p must be true or false, got {log1p!r}")
    if log1p and nums.get("clip_min", -1.0) <= -1.0:
        raise ValueError(f"dense.{column}: log1p needs clip_min > -1 (e.g. 0), so no value can make it NaN")
    return DenseTransform(
        nums.get("fill", 0.0), nums.get("clip_min"), log1p, nums.get("mean", 0.0), nums.get("std", 1.0)
    )


def load_featurizer(path: Path) -> CtrFeaturizer | VocabFeaturizer:
    """The CTR state a version publishes: the project's fitted featurizer, or an imported model's vocabularies."""
    doc = json.loads(path.read_text())
    if isinstance(doc, dict) and doc.get("format") == FORMAT:
        return VocabFeaturizer.from_dict(doc)
    return CtrFeaturizer.from_dict(doc)
