"""Criteo sample lines as request rows, for the load profiles that replay real traffic."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def request_rows(path: Path, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` lines of ``path`` as a request carries them: ints for I1..I13, hex strings for
    C1..C26, missing fields absent."""
    rows = []
    with open(path, newline="") as f:
        for line in csv.reader(f, delimiter="\t"):
            row: dict[str, Any] = {f"I{i}": int(v) for i, v in enumerate(line[1:14], 1) if v}
            row.update({f"C{i}": v for i, v in enumerate(line[14:40], 1) if v})
            rows.append(row)
            if len(rows) >= limit:
                break
    return rows
