"""Judged query-product data (``[data]`` of a search config) and the split **by query**, never by row.

Every query's judged products form one ranking list; a query and all its rows fall into exactly one part.
The split is a seeded permutation of the distinct queries (sorted first, so it does not depend on row order);
cross-validation folds come from the same permutation.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.repository import sha256_file
from compress.errors import DataError
from compress.search.config import SearchDataSection, SearchSplitSection


@dataclass
class Judged:
    """One query's ranking list: product ids and their gains (row order of the file)."""

    query: str
    products: list[str]
    gains: np.ndarray


@dataclass
class SearchData:
    """All ranking lists and the catalogue (product id -> its text fields)."""

    lists: list[Judged]
    catalogue: dict[str, dict[str, Any]]
    rows: int
    files: list[dict[str, Any]] = field(default_factory=list)


def read_judgments(cfg: SearchDataSection) -> SearchData:
    """Read the JSON-lines (optionally gzip) judgments file described by ``[data]``."""
    path = cfg.resolved_path()
    if not path.is_file():
        raise DataError(
            f"data file {path} does not exist: set [data].path (or DATA_DIR); the ESCI set is described "
            "in shared/data/search/esci_us_products/README.md"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    by_query: dict[str, tuple[list[str], list[float]]] = {}
    catalogue: dict[str, dict[str, Any]] = {}
    rows = 0
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [c for c in (cfg.query, cfg.product_id, cfg.gain) if c not in row]
            if missing:
                raise DataError(f"{path}:{lineno}: missing columns {missing} (see [data] in the config)")
            pid = str(row[cfg.product_id])
            ids, gains = by_query.setdefault(str(row[cfg.query]), ([], []))
            ids.append(pid)
            gains.append(float(row[cfg.gain]))
            catalogue.setdefault(pid, {k: row.get(k) for k in cfg.text_fields})
            rows += 1
    if len(by_query) < 3:
        raise DataError(f"{path}: {len(by_query)} distinct queries; a query split needs more")
    lists = [Judged(q, ids, np.asarray(g, np.float64)) for q, (ids, g) in sorted(by_query.items())]
    files = [{"path": str(path), "sha256": sha256_file(path), "rows": rows}]
    return SearchData(lists, catalogue, rows, files)


@dataclass(frozen=True)
class QuerySplit:
    """Indices into ``SearchData.lists`` per part, plus the fold of every query for cross-validation."""

    train: list[int]
    validation: list[int]
    test: list[int]
    folds: list[int]
    seed: int

    def describe(self, data: SearchData) -> dict[str, Any]:
        def rows(idx: list[int]) -> int:
            return sum(len(data.lists[i].products) for i in idx)

        return {
            "method": "by query: seeded permutation (numpy default_rng) of the sorted distinct queries",
            "seed": self.seed,
            "queries": {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)},
            "rows": {"train": rows(self.train), "validation": rows(self.validation), "test": rows(self.test)},
            "test_queries": [data.lists[i].query for i in self.test],
            "files": [Path(f["path"]).name for f in data.files],
        }


def split_queries(n_queries: int, cfg: SearchSplitSection) -> QuerySplit:
    """validation / test first from the permutation, the rest trains (capped); fold = position mod ``folds``."""
    if cfg.validation_queries + cfg.test_queries >= n_queries:
        raise DataError(
            f"{n_queries} queries cannot hold {cfg.validation_queries} validation + {cfg.test_queries} "
            "test queries and still train"
        )
    perm = [int(i) for i in np.random.default_rng(cfg.seed).permutation(n_queries)]
    v, t = cfg.validation_queries, cfg.test_queries
    train = perm[v + t :]
    if cfg.max_train_queries is not None:
        train = train[: cfg.max_train_queries]
    folds = [0] * n_queries
    for pos, q in enumerate(perm):
        folds[q] = pos % cfg.folds
    return QuerySplit(train, perm[:v], perm[v : v + t], folds, cfg.seed)
