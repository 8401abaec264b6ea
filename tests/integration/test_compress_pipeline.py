"""The whole compress pipeline on the real Criteo sample (shared/data/ctr/criteo_kaggle_train_10k.txt)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.repository import list_versions, load_verified
from compress.cli import main
from compress.pipeline import run
from compress.publish import publish
from compress.robustness.perturb import CTR_KINDS
from tests.fixtures.checks import expect_robustness
from tests.fixtures.compress_run import CompressRun

MODEL = "ad-ctr"


def test_network_beats_logistic_regression(ctr_compress_run: CompressRun) -> None:
    r = ctr_compress_run.result
    fp32 = r.candidates[0].metrics
    assert fp32["auc"] > r.baseline["auc"] and fp32["logloss"] < r.baseline["logloss"]


def test_published_int8_passes_gate_is_small_and_verifies(ctr_compress_run: CompressRun) -> None:
    repo = ctr_compress_run.repo
    assert list_versions(repo, MODEL) == [1, 2]
    _, fp32 = load_verified(repo, MODEL, 1)  # verifies every sha256
    _, best = load_verified(repo, MODEL, 2)
    assert fp32.candidate == "fp32" and "int8" in best.candidate
    assert best.gate.passed and best.gate.numbers["auc"] >= 0.999 * best.metrics["fp32"]["auc"]
    assert best.metrics["candidate"]["logloss"] <= 1.005 * best.metrics["fp32"]["logloss"]
    ratio = fp32.artifact().bytes / best.artifact().bytes
    assert ratio >= 3.5, f"published INT8 artifact is only {ratio:.2f}x smaller than FP32"
    assert best.lineage.parent_version == 1 and best.lineage.data_files[0].sha256
    assert best.recipe["tensorrt"]["status"] in {"skipped", "built"}
    assert set(best.latency) == {"1", "64", "512"}
    assert best.preprocessing is not None and best.aux("preprocess").path == best.preprocessing.path


def test_every_candidate_is_reported_with_size_latency_and_accuracy(ctr_compress_run: CompressRun) -> None:
    repo = ctr_compress_run.repo
    report = json.loads((repo / MODEL / "2" / "report.json").read_text())
    names = {c["name"] for c in report["candidates"]}
    assert set(ctr_compress_run.cfg.candidates) <= names
    for c in report["candidates"]:
        assert c["status"] in {"reference", "passed", "failed"}, c
        assert c["bytes"] > 0 and set(c["latency_ms"]) == {"1", "64", "512"} and "auc" in c["metrics"]
        if c["status"] == "failed":
            assert c["gate"]["reason"]


def test_evaluate_reproduces_published_metrics(
    ctr_compress_run: CompressRun, capsys: pytest.CaptureFixture[str]
) -> None:
    for v in (1, 2):
        assert main(["evaluate", str(ctr_compress_run.repo / MODEL / str(v))]) == 0
        assert "reproduced" in capsys.readouterr().out


def test_report_command_writes_table_and_plot(
    ctr_compress_run: CompressRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plot.png"
    assert main(["report", MODEL, "--repo", str(ctr_compress_run.repo), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| int8_qdq |" in text and "**selected**" in text
    assert "| flips |" in text and "Robustness ('flips' column): 600 perturbed copies of 200 test rows" in text, text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_detects_a_tampered_artifact(
    ctr_compress_run: CompressRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    copy = tmp_path / "repo" / MODEL / "2"
    shutil.copytree(ctr_compress_run.repo / MODEL / "2", copy)
    with open(copy / "model.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    assert main(["evaluate", str(copy)]) == 2
    assert "sha256" in capsys.readouterr().err


def test_rerun_is_deterministic_and_publishes_next_versions(ctr_compress_run: CompressRun) -> None:
    repo = ctr_compress_run.repo
    old = {p: (p.stat().st_mtime_ns, p.read_bytes()) for v in ("1", "2") for p in (repo / MODEL / v).iterdir()}
    again = run(ctr_compress_run.cfg, repo)
    first = {c.name: c.metrics for c in ctr_compress_run.result.candidates}
    for c in again.candidates:  # fixed seeds, single-threaded training: metrics agree to 1e-6
        for k, v in c.metrics.items():
            assert v == pytest.approx(first[c.name][k], abs=1e-6), (c.name, k)
    assert list_versions(repo, MODEL) == [1, 2, 3, 4]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in old} == old  # older versions untouched
    _, m4 = load_verified(repo, MODEL, 4)
    assert m4.lineage.parent_version == 3


def test_interrupted_publish_leaves_no_visible_version(ctr_compress_run: CompressRun) -> None:
    repo = ctr_compress_run.repo
    before = list_versions(repo, MODEL)

    def crash(d: Path, v: int):  # type: ignore[no-untyped-def]
        (d / "model.onnx").write_bytes(os.urandom(1000))
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish(repo, MODEL, crash)
    assert list_versions(repo, MODEL) == before
    assert not list((repo / MODEL).glob(".staging-*"))


def test_published_versions_record_a_drift_reference_of_inputs_and_pctr(ctr_compress_run: CompressRun) -> None:
    cfg = ctr_compress_run.cfg
    for v in ctr_compress_run.result.published.values():
        _, manifest = load_verified(ctr_compress_run.repo, MODEL, v)
        ref = manifest.drift
        assert ref is not None, f"version {v} has no drift reference"
        names = [f.name for f in ref.features]
        assert names == [*cfg.data.dense, *cfg.data.categorical, "pctr"], names
        for f in ref.features:
            assert sum(f.proportions) == pytest.approx(1.0, abs=1e-3), f"{f.name}: {f.proportions}"
        pctr = ref.features[-1]
        assert pctr.role == "output" and pctr.tensor == "pctr" and len(pctr.edges) >= 5, pctr


def test_published_versions_carry_their_robustness_result(ctr_compress_run: CompressRun) -> None:
    expect_robustness(ctr_compress_run.repo, MODEL, ctr_compress_run.result.published.values(), set(CTR_KINDS))
