"""Reading an intent data set's files in any of the formats ``[data].format`` names: CSV, TSV, JSON, JSONL.

Every file becomes a list of string-valued records; the columns a caller needs must be present, else one
``DataError`` line names the file, the missing columns and the ones found.
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


def read_records(path: Path, declared_format: str, need: list[str]) -> list[dict[str, str]]:
    """Rows of ``path`` as {column: text}; ``need`` columns must exist in the first row."""
    if not path.is_file():
        raise DataError(
            f"data file {path} does not exist: set [data].path in the config (or DATA_DIR) to the data "
            "folder; the Bitext data are described in shared/data/chatbot/README.md"
        )
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
