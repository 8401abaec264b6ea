"""Held-out and calibration rows of an imported model, checked against the model's declared inputs.

Parquet feeds a model with one FP32 input ``[batch, F]`` from F numeric columns (``features`` order, or the
file's order without the label/group columns). NPZ feeds any number of inputs: one array per input name plus
the label (and group) arrays. Every mismatch names the input and what it expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.manifest import TensorSpec
from compress.errors import DataError
from compress.imported.config import ImportDataSection

Feeds = dict[str, np.ndarray]
NUMPY_DTYPES = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


@dataclass
class Rows:
    """Model inputs, labels and (for ranking metrics) query groups of one split."""

    feeds: Feeds
    labels: np.ndarray
    groups: np.ndarray | None
    records: list[dict[str, Any]] | None = None
    """Raw rows (a model imported with its vocabularies): what the in-graph featurization is checked on."""

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray) -> Rows:
        return Rows(
            {k: v[idx] for k, v in self.feeds.items()},
            self.labels[idx],
            None if self.groups is None else self.groups[idx],
            None if self.records is None else [self.records[i] for i in idx],
        )


def load_rows(path: Path, data: ImportDataSection, inputs: list[TensorSpec]) -> Rows:
    """Read ``path`` (.parquet or .npz) into inputs matching ``inputs``; raise DataError naming any mismatch."""
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    if path.suffix == ".npz":
        return _from_npz(path, data, inputs)
    if path.suffix in (".parquet", ".pq"):
        return _from_parquet(path, data, inputs)
    raise DataError(f"{path}: data must be .parquet (one column per feature) or .npz (one array per model input)")


def _from_parquet(path: Path, data: ImportDataSection, inputs: list[TensorSpec]) -> Rows:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    columns = list(table.column_names)
    if data.label not in columns:
        raise DataError(f"{path.name}: label column {data.label!r} is missing (columns: {columns})")
    if data.group and data.group not in columns:
        raise DataError(f"{path.name}: group column {data.group!r} is missing (columns: {columns})")
    features = data.features or [c for c in columns if c not in (data.label, data.group)]
    missing = [c for c in features if c not in columns]
    if missing:
        raise DataError(f"{path.name}: feature columns {missing} are missing (columns: {columns})")
    if len(inputs) != 1:
        names = [t.name for t in inputs]
        raise DataError(
            f"the model has {len(inputs)} inputs {names}; a Parquet file feeds exactly one [batch, F] input "
            "(use an .npz file with one array per input name)"
        )
    spec = inputs[0]
    import pyarrow as pa

    numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_decimal)
    bad = [c for c in features if not any(t(table.schema.field(c).type) for t in numeric)]
    if bad:
        raise DataError(f"{path.name}: feature columns {bad} are not numeric (input {spec.name!r} is {spec.dtype})")
    if spec.dtype != "FP32":
        raise DataError(f"input {spec.name!r} is {spec.dtype}; a Parquet file feeds one FP32 input (use .npz)")
    if len(spec.shape) != 2 or spec.shape[1] not in (-1, len(features)):
        raise DataError(
            f"input {spec.name!r} expects shape {_shape(spec)}, but {path.name} gives [batch, {len(features)}] "
            f"from the feature columns {features}"
        )
    x = table.select(features).to_pandas().to_numpy(dtype=np.float32)
    labels = table.column(data.label).to_numpy(zero_copy_only=False)
    groups = table.column(data.group).to_numpy(zero_copy_only=False) if data.group else None
    return checked_rows(Rows({spec.name: np.ascontiguousarray(x)}, np.asarray(labels), groups), path, data)


def _from_npz(path: Path, data: ImportDataSection, inputs: list[TensorSpec]) -> Rows:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if data.label not in arrays:
        raise DataError(f"{path.name}: label array {data.label!r} is missing (arrays: {sorted(arrays)})")
    if data.group and data.group not in arrays:
        raise DataError(f"{path.name}: group array {data.group!r} is missing (arrays: {sorted(arrays)})")
    feeds: Feeds = {}
    for spec in inputs:
        if spec.name not in arrays:
            raise DataError(
                f"{path.name}: no array for model input {spec.name!r} {spec.dtype} {_shape(spec)} "
                f"(arrays: {sorted(arrays)})"
            )
        a = arrays[spec.name]
        want = NUMPY_DTYPES.get(spec.dtype)
        if want is None:
            raise DataError(f"input {spec.name!r}: dtype {spec.dtype} cannot be fed from a file")
        if a.ndim != len(spec.shape) or any(
            d not in (-1, n) for d, n in zip(spec.shape[1:], a.shape[1:], strict=False)
        ):
            raise DataError(f"input {spec.name!r} expects shape {_shape(spec)}; {path.name} has {list(a.shape)}")
        if not np.can_cast(a.dtype, want, casting="same_kind"):
            raise DataError(f"input {spec.name!r} expects {spec.dtype}; {path.name} has {a.dtype}")
        feeds[spec.name] = np.ascontiguousarray(a.astype(want, copy=False))
    rows = Rows(feeds, np.asarray(arrays[data.label]), arrays.get(data.group) if data.group else None)
    return checked_rows(rows, path, data)


def checked_rows(rows: Rows, path: Path, data: ImportDataSection) -> Rows:
    """Equal row counts, at least one row, a 1-D label without missing values: whatever the file format."""
    n = len(rows.labels)
    for name, a in rows.feeds.items():
        if len(a) != n:
            raise DataError(f"{path.name}: input {name!r} has {len(a)} rows but the label has {n}")
    if n == 0:
        raise DataError(f"{path.name} has no rows")
    if rows.labels.ndim == 2 and rows.labels.shape[1] == 1:
        rows.labels = rows.labels[:, 0]
    if rows.labels.ndim != 1:
        raise DataError(f"{path.name}: label {data.label!r} has shape {list(rows.labels.shape)}; expected [rows]")
    if np.issubdtype(rows.labels.dtype, np.floating) and np.isnan(rows.labels).any():
        raise DataError(f"{path.name}: label {data.label!r} has missing values")
    return rows


def _shape(spec: TensorSpec) -> str:
    return "[" + ", ".join("batch" if i == 0 and d == -1 else str(d) for i, d in enumerate(spec.shape)) + "]"


def split(rows: Rows, fraction: float, seed: int) -> tuple[Rows, Rows, dict[str, Any]]:
    """Seeded split into (calibration, held-out) when no calibration file is given; returns the description."""
    n = len(rows)
    n_cal = max(1, int(round(n * fraction)))
    if n - n_cal < 2:
        raise DataError(f"{n} rows are too few to split into calibration and held-out rows")
    perm = np.random.default_rng(seed).permutation(n)
    cal, held = np.sort(perm[:n_cal]), np.sort(perm[n_cal:])
    return rows.take(cal), rows.take(held), {"seed": seed, "calibration_rows": n_cal, "held_out_rows": n - n_cal}
