"""Build the demo models into a model repository if they are missing (the README's main command).

The demo trains the ad-CTR model and the chatbot on the real data under ``DATA_DIR`` (default
``../shared/data``). If the CTR data is absent, it falls back to a small **synthetic** CTR log, clearly labelled as such in the log output, the data path and the
manifest lineage, so a fresh machine can still run the service end to end. Synthetic models are for the demo
only; their metrics mean nothing. Without the Bitext data the chatbot is skipped (with a warning).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from app.repository import list_versions
from compress.config import PROJECT_ROOT, CompressConfig, load_config

log = logging.getLogger("compress.demo")
DEMO_CONFIGS = [PROJECT_ROOT / "compress" / "configs" / n for n in ("ad_ctr.toml", "chatbot.toml")]


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


def _data_present(cfg: Any) -> bool:
    path = cfg.data.resolved_path()
    return path.is_file() if cfg.model.task == "ad_ctr" else (path / cfg.data.pairs).is_file()


def ensure_demo_models(repo: Path) -> list[str]:
    """Run ``compress`` for every demo config whose model has no published version; returns what was built."""
    from compress.pipeline import run

    built = []
    for config in DEMO_CONFIGS:
        cfg = load_config(config)
        if list_versions(repo, cfg.model.name):
            continue
        if not _data_present(cfg):
            if cfg.model.task != "ad_ctr":
                log.warning("data %s not found: skipping %s (set DATA_DIR; see README, 'Data')", cfg.data.path,
                            cfg.model.name)
                continue
            tmp = Path(tempfile.mkdtemp(prefix="demo-data-")) / "SYNTHETIC-ctr-demo.tsv"
            log.warning("data %s not found: training %s on a SYNTHETIC log (%s) for the demo only. Get the real "
                        "Criteo sample (see README, 'Data') and set DATA_DIR.", cfg.data.path, cfg.model.name, tmp)
            cfg.data.path = str(synthetic_ctr_log(tmp, cfg))
            cfg.select.min_compression = 1.0
        log.info("building demo model %s from %s (about a minute)", cfg.model.name, config.name)
        result = run(cfg, repo)
        built.append(f"{cfg.model.name}: published {result.published}")
    return built
