"""An imported CTR model with its feature vocabularies: checked against the model, fed raw rows, published as a
``ctr`` version (``/v1/ads/ctr``) whose ``model_raw.onnx`` holds the featurization.

With ``[model] vocab = FILE`` (``--vocab``), the data files hold raw log rows (the label plus the vocabulary's
columns: category strings, numbers, nulls), the same fields storefronts send; the vocabulary turns them into the
model's inputs for the gate, and each published version is checked raw-graph-versus-model on held-out rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from app.manifest import TensorSpec
from app.tasks.ctr.features import FeatureError
from app.tasks.ctr.raw import RAW_MODEL_FILE, RAW_MODEL_ROLE
from app.tasks.ctr.vocab import CODE_VERSION, DTYPES, VocabFeaturizer
from compress.errors import ConfigError, DataError
from compress.imported.config import ImportDataSection
from compress.imported.data import Rows, checked_rows

STATE_FILE: Final = "vocab.json"
CHECK_ROWS: Final = 512  # held-out rows both paths must agree on before a version is published
CHECK_ATOL: Final = 1e-5


def load_vocab(path: Path, inputs: list[TensorSpec]) -> VocabFeaturizer:
    """Parse ``path`` and check it feeds exactly the model's inputs: names, widths, dtypes (filled in here)."""
    if not path.is_file():
        raise ConfigError(f"vocabulary file {path} does not exist")
    try:
        f = VocabFeaturizer.load(path)
    except ValueError as e:
        raise ConfigError(f"{path.name}: {e}") from None
    names = [t.name for t in inputs]
    if sorted(f.inputs) != sorted(names):
        raise ConfigError(f"{path.name}: 'inputs' names {sorted(f.inputs)}, but the model's inputs are {names}")
    for t in inputs:
        cols = f.inputs[t.name]
        if t.dtype not in DTYPES:
            raise ConfigError(f"input {t.name!r} is {t.dtype}; a vocabulary feeds {sorted(DTYPES)} inputs")
        if len(t.shape) != 2 or t.shape[1] not in (-1, len(cols)):
            raise ConfigError(
                f"input {t.name!r} has shape {t.shape}; {path.name} gives it [batch, {len(cols)}] columns {cols[:5]}..."
            )
        given = f.dtypes.get(t.name)
        if given is not None and given != t.dtype:
            raise ConfigError(f"{path.name}: dtypes.{t.name} is {given}, but the model's input is {t.dtype}")
        f.dtypes[t.name] = t.dtype
    return f


def load_raw_rows(path: Path, data: ImportDataSection, f: VocabFeaturizer) -> Rows:
    """Raw Parquet rows -> the model's inputs through the vocabulary; the raw records are kept for the check."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    if path.suffix not in (".parquet", ".pq"):
        raise DataError(f"{path}: with a vocabulary the data must be .parquet raw rows (label + raw columns)")
    table = pq.read_table(path)
    have = set(table.column_names)
    for col, what in ((data.label, "label"), (data.group, "group")):
        if col and col not in have:
            raise DataError(f"{path.name}: {what} column {col!r} is missing (columns: {table.column_names})")
    wanted = [*f.categorical_columns, *f.dense_columns]
    missing = [c for c in wanted if c not in have]
    if missing:
        raise DataError(f"{path.name}: raw columns {missing[:10]} of the vocabulary are missing")
    records: list[dict[str, Any]] = table.select(wanted).to_pylist()
    try:
        feeds = f.transform_records(records)
    except FeatureError as e:
        raise DataError(f"{path.name}: {e}") from None
    labels = np.asarray(table.column(data.label).to_numpy(zero_copy_only=False))
    groups = table.column(data.group).to_numpy(zero_copy_only=False) if data.group else None
    rows = checked_rows(Rows(feeds, labels, groups, records), path, data)
    return rows


def write_ctr_files(
    version_dir: Path, f: VocabFeaturizer, model_path: Path, records: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, str], dict[str, str]]:
    """The state (``vocab.json``) and ``model_raw.onnx``, checked on ``records``: (preprocessing, {role: path})."""
    import onnx

    from compress.ctr.feature_graph import check_raw_model
    from compress.ctr.vocab_graph import build_vocab_raw_model

    f.save(version_dir / STATE_FILE)
    model = onnx.load(str(model_path))
    raw = build_vocab_raw_model(f, model)
    check_raw_model(raw, model, f, list(records[:CHECK_ROWS]), atol=CHECK_ATOL)
    onnx.save(raw, str(version_dir / RAW_MODEL_FILE))
    return {"kind": "ctr", "path": STATE_FILE, "code_version": CODE_VERSION}, {RAW_MODEL_ROLE: RAW_MODEL_FILE}
