"""Reading an intent data set's files in any of the formats ``[data].format`` names: CSV, TSV, JSON, JSONL.

Every file becomes a list of string-valued records; the columns a caller needs must be present, else one
``DataError`` line names the file, the missing columns and the ones found. A data set shipped as one JSON object
of lists (``{"train": [[text, intent], ...], "val": ..., "oos_test": ...}``) is flattened by
:func:`read_split_object` into (text, intent) rows per key.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from compress.errors import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def file_format(path: Path, declared: str) -> str:
    """``declared`` unless it is 'auto', else the format of the file's extension."""
    if declared != "auto":
        return declared
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; set [data].format "
            f"to one of csv, tsv, json, jsonl"
        )
    return fmt


def _text(v: Any) -> str:
    return "" if v is None else v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _json_records(path: Path, raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise DataError(f"{path}: a JSON data file must be a list of objects (one per row)")
    return raw


def _missing_file(path: Path) -> DataError:
    return DataError(
        f"data file {path} does not exist: set [data].path in the config (or DATA_DIR) to the data "
        "folder; the Bitext data are described in shared/data/chatbot/README.md"
    )


def _pair(path: Path, key: str, i: int, item: Any, text_column: str, label_column: str) -> tuple[str, str]:
    """One list item: ``[text, intent]`` or an object with the text and label columns."""
    if isinstance(item, list) and len(item) == 2:
        return _text(item[0]), _text(item[1])
    if isinstance(item, dict) and text_column in item and label_column in item:
        return _text(item[text_column]), _text(item[label_column])
    raise DataError(
        f"{path}: item {i} of {key!r} is {json.dumps(item)[:80]}; each item must be [text, intent] or an object "
        f"with {text_column!r} and {label_column!r}"
    )


def read_split_object(path: Path, text_column: str, label_column: str) -> dict[str, list[tuple[str, str]]]:
    """``{key: [[text, intent], ...]}`` (items may also be objects with the text/label columns) -> rows per key."""
    if not path.is_file():
        raise _missing_file(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise DataError(
            f"{path}: format 'json_splits' needs one JSON object whose values are lists, e.g. "
            '{"train": [["text", "intent"], ...], "test": [...]}'
        )
    return {k: [_pair(path, k, i, item, text_column, label_column) for i, item in enumerate(v)] for k, v in raw.items()}


def read_records(path: Path, declared_format: str, need: list[str]) -> list[dict[str, str]]:
    """Rows of ``path`` as {column: text}; ``need`` columns must exist in the first row."""
    if not path.is_file():
        raise _missing_file(path)
    fmt = file_format(path, declared_format)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: Bitext's 20k file starts with a BOM
            if fmt in ("csv", "tsv"):
                rows: list[dict[str, Any]] = list(csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ","))
            elif fmt == "json":
                rows = _json_records(path, json.load(f))
            else:
                rows = []
                for lineno, line in enumerate(f, start=1):
                    if line.strip():
                        try:
                            rows.extend(_json_records(path, [json.loads(line)]))
                        except json.JSONDecodeError as e:
                            raise DataError(f"{path} line {lineno} is not JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); JSON Lines files need [data].format = 'jsonl'") from None
    if not rows:
        raise DataError(f"{path} has no rows")
    missing = [c for c in need if c not in rows[0]]
    if missing:
        raise DataError(
            f"{path}: columns {missing} are missing (found {list(rows[0])}); set the [data] column "
            "names (text_column, label_column, ...)"
        )
    return [{k: _text(v) for k, v in r.items()} for r in rows]
