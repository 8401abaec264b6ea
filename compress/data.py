"""Reading tabular training data described by ``[data]`` and the seeded train/validation/test split."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np

from app.repository import sha256_file
from compress.config import DataSection, SplitSection
from compress.errors import DataError


@dataclass(frozen=True)
class Split:
    """Row indices of each part; recorded in the manifest's lineage so the split can be reproduced."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def describe(self, cfg: SplitSection) -> dict[str, object]:
        return {
            "method": "seeded permutation (numpy default_rng)",
            "seed": cfg.seed,
            "rows": {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)},
        }


def split_rows(n: int, cfg: SplitSection) -> Split:
    perm = np.random.default_rng(cfg.seed).permutation(n)
    n_train = int(round(n * cfg.train))
    n_val = int(round(n * cfg.validation))
    return Split(perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :])


def read_table(cfg: DataSection) -> dict[str, list[str]]:
    """Read the file into string columns, checking the column count of every row.

    Values stay strings (empty = missing) so categorical codes like ``'0012'`` are never mangled by type
    guessing; the featurizer interprets them.
    """
    path = cfg.resolved_path()
    if not path.is_file():
        raise DataError(
            f"data file {path} does not exist: set [data].path in the config (or DATA_DIR) to your CTR log; "
            "the Criteo sample is described in shared/data/ctr/README.md"
        )
    delim = "\t" if cfg.format == "tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=delim)
            names = next(reader) if cfg.header else list(cfg.columns)
            if cfg.header and cfg.columns and names != list(cfg.columns):
                raise DataError(f"{path}: header {names[:5]}... differs from [data].columns")
            rows = []
            for lineno, row in enumerate(reader, start=2 if cfg.header else 1):
                if len(row) != len(names):
                    raise DataError(
                        f"{path} line {lineno}: {len(row)} columns, expected {len(names)} "
                        f"(check [data].format = '{cfg.format}' and [data].columns)"
                    )
                rows.append(row)
                if cfg.max_rows and len(rows) >= cfg.max_rows:
                    break
    except StopIteration:
        raise DataError(f"{path} is empty") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e}); is it compressed?") from None
    if not rows:
        raise DataError(f"{path} has a header but no rows")
    missing = [c for c in [cfg.label, *cfg.dense, *cfg.categorical] if c not in names]
    if missing:
        raise DataError(f"{path}: columns {missing} named in [data] are not in the file's header")
    return {name: [r[i] for r in rows] for i, name in enumerate(names)}


def labels(columns: dict[str, list[str]], cfg: DataSection) -> np.ndarray:
    """The binary label column as float32; anything other than 0/1 is a DataError naming the first bad row."""
    raw = columns[cfg.label]
    try:
        y = np.array([float(v) for v in raw], dtype=np.float32)
    except ValueError:
        bad = next(i for i, v in enumerate(raw) if not _is_float(v))
        raise DataError(f"label column {cfg.label!r} row {bad + 1}: {raw[bad]!r} is not 0 or 1") from None
    if not np.isin(y, (0.0, 1.0)).all():
        bad = int(np.flatnonzero(~np.isin(y, (0.0, 1.0)))[0])
        raise DataError(f"label column {cfg.label!r} row {bad + 1}: {raw[bad]!r} is not 0 or 1")
    if y.min() == y.max():
        raise DataError(f"label column {cfg.label!r} has only one class; AUC is undefined")
    return y


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def data_file_record(cfg: DataSection, rows: int) -> dict[str, object]:
    path = cfg.resolved_path()
    return {"path": str(path), "sha256": sha256_file(path), "rows": rows}
