"""A SYNTHETIC Criteo-shaped log: the demo's stand-in when the real CTR sample is missing (metrics mean nothing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compress.config import CompressConfig


def synthetic_ctr_log(path: Path, cfg: CompressConfig, rows: int = 6000, seed: int = 0) -> Path:
    """A Criteo-shaped TSV whose clicks depend on a few features (SYNTHETIC — demo fallback only)."""
    rng = np.random.default_rng(seed)
    d = cfg.data
    n_dense, n_cat = len(d.dense), len(d.categorical)
    dense = rng.poisson(3.0, size=(rows, n_dense)) * rng.integers(1, 20, size=n_dense)
    cats = rng.zipf(1.6, size=(rows, n_cat)) % 500
    logit = 0.15 * np.log1p(dense[:, 0]) - 0.8 + 0.6 * (cats[:, 0] % 3 == 0) - 0.4 * (cats[:, 1] % 5 == 1)
    y = rng.random(rows) < 1 / (1 + np.exp(-logit))
    with open(path, "w") as f:
        for i in range(rows):
            row = {d.label: str(int(y[i]))}
            row.update({c: ("" if rng.random() < 0.1 else str(dense[i, j])) for j, c in enumerate(d.dense)})
            row.update({c: f"{cats[i, j] * 2654435761 % 2**32:08x}" for j, c in enumerate(d.categorical)})
            f.write("\t".join(row[c] for c in d.columns) + "\n")
    return path


def synthetic_data(folder: Path, cfg: CompressConfig) -> Path:
    """The demo's fallback hook (:attr:`compress.tasks.TaskSpec.synthetic_data`)."""
    return synthetic_ctr_log(folder / "SYNTHETIC-ctr-demo.tsv", cfg)
