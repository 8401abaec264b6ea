"""``compress import`` end to end on a small graph: NPZ data, the seeded calibration split, and a refused gate
that publishes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.repository import list_versions
from compress.errors import GateFailed
from compress.imported.config import parse_import_config
from compress.imported.pipeline import run_import
from tests.unit.test_import_checks import _linear


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    model = _linear(tmp_path / "m.onnx", n_in=8, hidden=64)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    y = (x.sum(axis=1) + rng.normal(size=600) > 0).astype(np.int64)
    data = tmp_path / "eval.npz"
    np.savez(data, x=x, y=y)
    return model, data


def _cfg(model: Path, data: Path, gate: dict[str, object]) -> object:
    return parse_import_config(
        {
            "model": {"name": "tiny", "onnx": str(model)},
            "data": {"eval": str(data), "label": "y"},
            "gate": gate,
            "latency": {"batch_sizes": [1, 64], "repeats": 5},
        }
    )


def test_npz_import_publishes_fp32_and_the_selected_candidate(tmp_path: Path) -> None:
    model, data = _setup(tmp_path)
    repo = tmp_path / "repo"
    result = run_import(_cfg(model, data, {"metric": "auc"}), repo)  # type: ignore[arg-type]
    status = {c.name: c.status for c in result.candidates}
    assert status["int8_dynamic_s8"] in ("passed", "failed") and status["pruned"] == "skipped", status
    assert result.data["calibration_rows"] == 120 and result.data["held_out_rows"] == 480, result.data
    assert list_versions(repo, "tiny") == list(range(1, len(result.published) + 1)), result.published


def test_a_refused_gate_publishes_nothing(tmp_path: Path) -> None:
    model, data = _setup(tmp_path)
    repo = tmp_path / "repo"
    impossible = {"metric": "auc", "kind": "min_ratio", "value": 1.5}  # no candidate can beat FP32 by 50 %
    with pytest.raises(GateFailed, match=r"no candidate passed the gate: .*nothing was published"):
        run_import(_cfg(model, data, impossible), repo)  # type: ignore[arg-type]
    assert not repo.exists() or not list_versions(repo, "tiny"), "a refused import published a version"
