"""The prepared GPU check, as far as a CPU can check it: the dry run end to end on the CTR fixture, the Gemm
rewrite its quantization relies on, and the step budget that keeps it inside a short lease."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compress.config import PROJECT_ROOT, load_config
from loadtest.gpu_budget import Budget, Skip
from loadtest.gpu_check import unfuse_gemm
from tests.fixtures.ctr_model import publish_ctr_version

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def recorded_repo(tmp_path: Path, ctr_artifacts: Path) -> Path:
    """The CTR fixture version with the compress config recorded, as ``compress run`` publishes it."""
    cfg = load_config(PROJECT_ROOT / "compress" / "configs" / "ad_ctr.toml").model_dump(mode="json")
    repo = tmp_path / "model_repo"
    repo.mkdir()
    publish_ctr_version(repo, seed=0, tweak=lambda m: m.model_copy(update={"recipe": {**m.recipe, "config": cfg}}))
    return repo


def test_dry_run_checks_every_cpu_step_in_bounded_time(recorded_repo: Path, tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "report.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OUT", None)
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "loadtest.gpu_check", "--dry-run", "--repo", str(recorded_repo), "--work", str(work),
           "--wheels", str(tmp_path / "no-wheels"), "--json", str(out), "--budget-s", "200", "--heartbeat-s", "5"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - t0
    assert proc.returncode == 0, f"dry run exited {proc.returncode}: {proc.stdout[-3000:]} {proc.stderr[-3000:]}"
    assert took < 280, f"the dry run took {took:.0f}s, over its budget"
    report = json.loads(out.read_text())
    steps = {s["name"]: s for s in report["steps"]}
    bad = {n: s for n, s in steps.items() if s["status"] not in ("ok", "skipped")}
    assert not bad, f"steps that did not end ok: {bad}"
    assert steps["install"]["status"] == "skipped", f"no wheels were given, yet: {steps['install']}"
    (model,) = report["models"]
    assert model["engine"]["status"] == "skipped" and "tensorrt" in model["engine"]["reason"], model["engine"]
    qdq = onnx.load(model["qdq"])
    assert any(n.op_type == "QuantizeLinear" for n in qdq.graph.node), "the q/dq onnx holds no QuantizeLinear"
    gate = model["gate"]
    assert gate["passed"] and gate["rows"] > 100 and set(gate["retention"]) == {"auc", "logloss"}, gate
    serve = report["serve"]
    assert serve["platform"] == "onnxruntime_onnx", f"the service runs the dry-run plan? {serve}"
    assert "TensorRT plan matches" in serve["selection"]["exact_match"], serve["selection"]
    assert "built for" in serve["selection"]["other_tensorrt"], serve["selection"]
    for rows in ("rows_1", "rows_64"):
        assert serve[rows]["rps"] > 0 and serve[rows]["errors"] == 0, f"{rows}: {serve[rows]}"
    assert "ort-cpu q/dq" in report["compare"]["median_ms"], report["compare"]
    assert (work / "data" / "ctr").is_dir(), "the dry run did not stage the data for the device"
    assert "| ad-ctr |" in proc.stdout and "steps:" in proc.stdout, proc.stdout[-2000:]
    beats = [line for line in proc.stdout.splitlines() if line.startswith("[gpu-check")]
    assert len(beats) >= 10, f"too few progress lines: {beats}"


def test_unfused_gemm_computes_the_same(ctr_artifacts: Path, tmp_path: Path) -> None:
    src, dst = ctr_artifacts / "model.onnx", tmp_path / "mm.onnx"
    n = unfuse_gemm(src, dst)
    ops = [node.op_type for node in onnx.load(str(dst)).graph.node]
    assert n > 0 and "Gemm" not in ops and "MatMul" in ops, f"{n} rewritten; ops now {ops}"
    rng = np.random.default_rng(0)
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (src, dst))
    feeds = {}
    for i in a.get_inputs():
        shape = [64, *i.shape[1:]]
        feeds[i.name] = rng.integers(0, 2, shape) if "int64" in i.type else rng.normal(size=shape).astype(np.float32)
    diff = float(np.max(np.abs(a.run(None, feeds)[0] - b.run(None, feeds)[0])))
    assert diff < 1e-5, f"outputs differ by {diff}"


def test_budget_records_failures_and_skips_without_ending_the_run() -> None:
    def boom() -> None:
        raise ValueError("boom")

    def nothing() -> None:
        raise Skip("no engine")

    ran: list[int] = []

    def slow() -> str:
        time.sleep(0.05)
        return ""

    def fine() -> str:
        ran.append(1)
        return "did it"

    def late_step() -> str:
        ran.append(2)
        return "ran"

    budget = Budget(total_s=60, heartbeat_s=0.05)
    with budget.heartbeat():
        budget.step("breaks", 5, boom)
        budget.step("nothing to do", 5, nothing)
        budget.step("slow", 0.01, slow)
        budget.step("fine", 5, fine)
    got = {s.name: (s.status, s.note) for s in budget.steps}
    assert got["breaks"] == ("failed", "ValueError: boom"), got
    assert got["nothing to do"] == ("skipped", "no engine"), got
    assert got["slow"][0] == "over_budget", got
    assert got["fine"] == ("ok", "did it") and ran == [1], got
    late = Budget(total_s=0.0)
    rec = late.step("late", 10, late_step)
    assert rec.status == "skipped" and "left" in rec.note and ran == [1], (rec, ran)
