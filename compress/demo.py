"""Build the demo models into a model repository if they are missing (the README's main command).

The demo trains the ad-CTR model and the chatbot on the real data under ``DATA_DIR`` (default
``../shared/data``). If the CTR data is absent, it falls back to a small **synthetic** CTR log, clearly
labelled as such in the warning, the final summary line, the data path and the manifest
(``lineage.split["synthetic"] = true``); the generated file is deleted after the run. A fresh machine can so
still run the service end to end; synthetic models are for the demo only and their metrics mean nothing.
Without the Bitext data the chatbot is skipped (with a warning).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from app.repository import list_versions
from compress.config import PROJECT_ROOT, CompressConfig, load_config
from compress.pipeline import RunResult, run
from compress.progress import stage_log
from compress.registry import spec_for

log = logging.getLogger("compress.demo")
DEMO_CONFIGS = [
    PROJECT_ROOT / "compress" / "configs" / n
    for n in ("ad_ctr.toml", "chatbot.toml", "search_bi.toml", "recommend.toml")
]


def _data_present(cfg: Any) -> bool:
    """Every file the config reads exists (which files: the task's spec says)."""
    return all(p.is_file() for p in spec_for(cfg.model.task).data_files(cfg))


def summary(cfg: CompressConfig, repo: Path, result: RunResult) -> str:
    """One line per model: what was published, where, and the selected candidate's gate numbers."""
    sel = result.selected
    label = " (SYNTHETIC data: demo only, metrics mean nothing)" if getattr(cfg.data, "synthetic", False) else ""
    where = ", ".join(f"{repo / cfg.model.name / str(v)} ({n})" for n, v in result.published.items())
    if sel is None or sel.gate is None:
        return f"{cfg.model.name}{label}: published {where}"
    ref = result.candidates[0]
    nums = sel.gate.numbers
    gate = "; ".join(
        f"{m} {nums[m]:.4f} (FP32 {nums[m + '_fp32']:.4f}, limit {nums[m + '_limit']:.4f})"
        for m in sorted({k for k in nums if not k.endswith(("_fp32", "_limit"))})
    )
    b = str(cfg.select.batch_size)
    return (
        f"{cfg.model.name}{label}: published {where}; {sel.name} is {ref.bytes / sel.bytes:.1f}x smaller than "
        f"FP32, {sel.latency.get(b, 0.0):.3f} ms at batch {b}; gate passed: {gate}"
    )


def ensure_demo_models(repo: Path) -> list[str]:
    """Run ``compress`` for every demo config whose model has no published version; returns one summary line per
    model built (what was published, where, with which gate numbers)."""
    built = []
    for config in DEMO_CONFIGS:
        cfg = load_config(config)
        if list_versions(repo, cfg.model.name):
            stage_log.info("[%s] already published in %s: nothing to build", cfg.model.name, repo / cfg.model.name)
            continue
        if _data_present(cfg):
            stage_log.info(
                "[%s] building from %s on %s (stage lines with measured ETAs follow, at least every 30 s)",
                cfg.model.name,
                config.name,
                cfg.data.resolved_path(),
            )
            built.append(summary(cfg, repo, run(cfg, repo)))
            continue
        synthetic = spec_for(cfg.model.task).synthetic_data
        if synthetic is None:
            log.warning(
                "data %s not found: skipping %s (set DATA_DIR; see README, 'Data')",
                cfg.data.resolved_path(),
                cfg.model.name,
            )
            continue
        with tempfile.TemporaryDirectory(prefix="demo-data-") as tmp:  # removed after the run, even on failure
            log.warning(
                "data %s not found: training %s on a SYNTHETIC log for the demo only; its metrics mean "
                "nothing. Get the real Criteo sample (see README, 'Data') and set DATA_DIR.",
                cfg.data.resolved_path(),
                cfg.model.name,
            )
            cfg.data.path = str(synthetic(Path(tmp), cfg))
            cfg.data.synthetic = True
            cfg.select.min_compression = 1.0
            built.append(summary(cfg, repo, run(cfg, repo)))
    return built
