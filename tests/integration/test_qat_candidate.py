"""An int8_qat candidate in a real (small) compress run on the Criteo sample: built, INT8 Q/DQ, gated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.config import CompressConfig, parse_config
from compress.errors import GateFailed
from compress.pipeline import REPORT_FILE
from compress.qat import qdq_counts


def test_qat_candidate_is_built_and_gated(ctr_config: CompressConfig, tmp_path: Path) -> None:
    from compress.pipeline import run

    raw = ctr_config.model_dump(mode="json")
    raw["candidates"] = ["fp32", "emb_int8+int8_qat"]
    raw["train"].update({"epochs": 3})
    raw["qat"] = {"epochs": 1, "max_rows": 2000}
    raw["latency"].update({"batch_sizes": [64], "repeats": 5})
    raw["select"].update({"batch_size": 64, "min_compression": 1.0})
    raw["engine"] = {"enabled": False}
    cfg = parse_config(raw)
    try:  # with this short training the gate may refuse it: either way it is gated and reported
        run(cfg, tmp_path / "repo", workdir=tmp_path / "work", publish_versions=False)
    except GateFailed:
        pass
    report = json.loads((tmp_path / "work" / REPORT_FILE).read_text())
    cands = {c["name"]: c for c in report["candidates"]}
    qat = cands["emb_int8+int8_qat"]
    assert qat["status"] in ("passed", "failed") and qat["gate"] is not None, f"not gated: {qat}"
    assert qat["precision"] == "emb-int8+int8-qat-qdq-s8s8", qat["precision"]
    counts = qdq_counts(tmp_path / "work" / "emb_int8__int8_qat.onnx")
    assert counts["int8_initializers"] >= 3 and counts["DequantizeLinear"] >= 6, f"not INT8 Q/DQ: {counts}"
    notes = qat["recipe"]["qat"]
    assert notes["train_rows"] == 2000 and notes["epochs"] == 1, notes
    ratio = cands["fp32"]["bytes"] / qat["bytes"]
    assert ratio > 3.0, f"QAT + emb_int8 only {ratio:.2f}x smaller than FP32"


def test_qat_on_a_task_without_the_hook_is_a_clear_error() -> None:
    from compress.candidates import GRAPH_STEPS, parse_name

    assert "int8_qat" in GRAPH_STEPS
    with pytest.raises(Exception, match="at most one int8"):
        parse_name("int8_qdq+int8_qat", [])
