"""Drift monitoring: PSI, the sliding window, reference recording, and a version's monitor end to end in-process."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from app.manifest import Artifact, DriftReference, Gate, Lineage, Manifest, TensorSpec
from app.metrics import Metrics
from app.rollout.bins import Binner, categorical_feature, numeric_feature
from app.rollout.drift import DriftMonitor, Window
from app.rollout.psi import psi
from app.settings import Settings
from app.tasks.base import Task


def test_psi_is_zero_for_identical_and_known_for_a_simple_shift() -> None:
    assert psi([0.5, 0.5], [50, 50]) == pytest.approx(0.0, abs=1e-12), "identical histograms"
    want = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    got = psi([0.5, 0.5], [80, 20])
    assert got == pytest.approx(want), f"PSI of 50/50 -> 80/20 is {want:.4f}, got {got:.4f}"
    empty = psi([0.5, 0.5, 0.0], [40, 40, 20])
    assert math.isfinite(empty) and empty > 0.25, f"a bin empty in the reference is floored, not infinite: {empty}"
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [1, 1, 1])


def test_psi_of_samples_of_one_distribution_is_small_and_of_a_shifted_one_large() -> None:
    rng = np.random.default_rng(7)
    ref = numeric_feature("x", rng.lognormal(size=5000).tolist(), "input")
    binner = Binner(ref)

    def live(values: np.ndarray) -> float:
        return psi(ref.proportions, np.bincount([binner(v) for v in values.tolist()], minlength=binner.bins))

    same, scaled = live(rng.lognormal(size=3000)), live(rng.lognormal(size=3000) * 10)
    assert same < 0.05, f"same distribution: PSI {same:.4f}"
    assert scaled > 0.25, f"values x10: PSI {scaled:.4f}"


def test_reference_bins_keep_missing_values_and_rare_categories_apart() -> None:
    num = numeric_feature("n", ["1", "", None, "3", 2, 0, 0, 0], "input")
    b = Binner(num)
    assert b("") == b(None) == b("not a number") == b.bins - 1, "missing values share the last bin"
    assert sum(num.proportions) == pytest.approx(1.0, abs=1e-5) and num.proportions[-1] == pytest.approx(0.25)
    cat = categorical_feature("c", ["a", "a", "b", "", 7, "7"], "input")
    assert cat.values[:2] == ["a", "7"], f"most frequent first, JSON 7 and CSV '7' are one key: {cat.values}"
    c = Binner(cat)
    assert c("zzz") == len(cat.values) and c("") == c(None) == len(cat.values) + 1, "other, then missing"


def test_the_window_forgets_the_oldest_values() -> None:
    feature = categorical_feature("c", ["a", "b"], "input")
    w = Window(feature, size=4)
    for v in ["a", "a", "a", "a", "b", "b"]:
        w.add(v)
    assert w.filled == 4 and w.counts[:2] == [2, 2], f"last 4 values are a,a,b,b: counts {w.counts}"


def _manifest(drift: DriftReference | None) -> Manifest:
    return Manifest(
        name="m",
        version=3,
        task="generic",
        created_at=datetime.now(UTC),
        inputs=[TensorSpec(name="x", dtype="FP32", shape=[-1, 1])],
        outputs=[TensorSpec(name="y", dtype="FP32", shape=[-1, 1])],
        artifacts=[Artifact(path="model.onnx", format="onnx", precision="fp32", sha256="0" * 64, bytes=1)],
        metrics={},
        gate=Gate(passed=True, rule="r", numbers={}),
        recipe={},
        lineage=Lineage(code_version="test"),
        candidate="fp32",
        drift=drift,
    )


class RowsTask(Task):
    kind = name = "drift_rows_test"
    default_model = "m"

    @classmethod
    def load(cls, files: Any, ctx: Any) -> RowsTask:
        return cls()

    def drift_rows(self, req: Any, result: Any, limit: int) -> list[Any]:
        return list(req)[:limit]


@dataclass
class Served:
    model: str
    version: int
    manifest: Manifest
    task: Task | None


def test_a_monitor_flags_the_shifted_feature_only_and_exports_it() -> None:
    rng = np.random.default_rng(3)
    ref = DriftReference(
        rows=4000,
        features=[
            numeric_feature("a", rng.normal(size=4000).tolist(), "input"),
            categorical_feature("c", rng.choice(["x", "y", "z"], size=4000).tolist(), "input"),
            numeric_feature("y", rng.uniform(size=4000).tolist(), "output", tensor="y"),
        ],
    )
    metrics = Metrics()
    mon = DriftMonitor(Settings(drift_sample_rate=1.0, drift_rows_per_request=8, drift_min_rows=200), metrics)
    mv = Served("m", 3, _manifest(ref), RowsTask())
    for _ in range(300):
        rows = [
            {"a": v * 10 + 5, "c": c} for v, c in zip(rng.normal(size=8), rng.choice(["x", "y", "z"], 8), strict=True)
        ]
        mon.observe_task(mv, rows, {})
        mon.observe_tensors(mv, {"y": rng.uniform(size=(8, 1)).astype(np.float32)})
    s = mon.summary("m")["3"]
    feats = s["features"]
    assert feats["a"]["psi"] > 0.25 and feats["a"]["level"] == "significant", f"a was shifted: {feats['a']}"
    assert feats["c"]["psi"] < 0.1 and feats["y"]["psi"] < 0.1, f"c and y were not: {feats}"
    gauge = metrics.registry.get_sample_value("model_drift_psi", {"model": "m", "version": "3", "feature": "a"})
    assert gauge is not None and gauge > 0.25, f"model_drift_psi for a: {gauge}"
    metrics.forget_version("m", 3)
    gone = metrics.registry.get_sample_value("model_drift_psi", {"model": "m", "version": "3", "feature": "a"})
    assert gone is None, f"an unloaded version's drift gauges go: {gone}"


def test_a_version_without_a_reference_reports_drift_unavailable_and_a_bad_task_never_raises() -> None:
    mon = DriftMonitor(Settings(drift_sample_rate=1.0), Metrics())
    mon.observe_task(Served("m", 1, _manifest(None), RowsTask()), [{"a": 1}], {})
    assert mon.summary("m") == {"1": {"available": False, "reason": "the version's manifest has no drift reference"}}, (
        mon.summary("m")
    )
    ref = DriftReference(rows=2, features=[numeric_feature("a", [1, 2], "input")])
    mon.observe_task(Served("m", 2, _manifest(ref), RowsTask()), None, {})  # drift_rows fails on None: logged only
    assert mon.summary("m")["2"]["window_rows"] == 0, mon.summary("m")
