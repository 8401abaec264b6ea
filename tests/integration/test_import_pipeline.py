"""``compress import`` end to end on a small graph: NPZ data, the seeded calibration split, a refused gate that
publishes nothing, and the robustness block of tensor and vocabulary (raw-field) imports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from app.repository import list_versions, read_manifest
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
    # robustness: the float input jittered, one score per row read as an order against another row
    assert result.robustness.get("set", {}).get("kinds") == ["dense_jitter"], result.robustness
    by_name = {c.name: c.robustness for c in result.candidates}
    assert by_name["fp32"]["status"] == "reference" and by_name["fp32"]["decision"] == "pair_order", by_name["fp32"]
    for name, version in result.published.items():
        block = read_manifest(repo / "tiny" / str(version)).robustness
        assert block is not None and block.status in ("reference", "passed"), (name, block)
        assert block.flip_rate is not None and block.limit is not None and block.flip_rate <= block.limit, block


def test_a_refused_gate_publishes_nothing(tmp_path: Path) -> None:
    model, data = _setup(tmp_path)
    repo = tmp_path / "repo"
    impossible = {"metric": "auc", "kind": "min_ratio", "value": 1.5}  # no candidate can beat FP32 by 50 %
    with pytest.raises(GateFailed, match=r"no candidate passed the gate: .*nothing was published"):
        run_import(_cfg(model, data, impossible), repo)  # type: ignore[arg-type]
    assert not repo.exists() or not list_versions(repo, "tiny"), "a refused import published a version"


def _vocab_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A small MLP over vocabulary-featurized raw rows (tests/unit/test_ctr_vocab.py's vocabulary)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from app.tasks.ctr.vocab import VocabFeaturizer
    from tests.unit.test_ctr_vocab import DOC

    f = VocabFeaturizer.from_dict(DOC)
    rng = np.random.default_rng(0)
    n = 600
    raw = {
        "C1": [str(v) if v != "-" else None for v in rng.choice(["a", "b", "5", "q", "-"], n)],
        "C2": [str(v) for v in rng.choice(["z", "y"], n)],
        "I1": rng.integers(0, 50, n).astype(float).tolist(),
        "I2": rng.normal(size=n).tolist(),
        "I3": rng.integers(0, 9, n).astype(float).tolist(),
    }
    feats = f.transform_records([{k: raw[k][i] for k in raw} for i in range(n)])
    w1 = (rng.normal(size=(6, 1024)) / 2).astype(np.float32)  # 1024 hidden units: INT8 shrinks a real file
    w2 = (rng.normal(size=(1024, 1)) / 8).astype(np.float32)
    h = np.maximum(np.c_[feats["ids"].astype(np.float32), feats["x"]] @ w1, 0)
    y = (rng.random(n) < 1 / (1 + np.exp(-(h @ w2)[:, 0]))).astype(np.int64)
    data = tmp_path / "eval.parquet"
    pq.write_table(pa.table({**raw, "clicked": y.tolist()}), data)
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["ids"], ["idf"], to=TensorProto.FLOAT),
            helper.make_node("Concat", ["idf", "x"], ["v"], axis=1),
            helper.make_node("MatMul", ["v", "W1"], ["h0"]),
            helper.make_node("Relu", ["h0"], ["h"]),
            helper.make_node("MatMul", ["h", "W2"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["p"]),
        ],
        "mlp",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 2]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4]),
        ],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 1])],
        [
            helper.make_tensor("W1", TensorProto.FLOAT, [6, 1024], w1.ravel().tolist()),
            helper.make_tensor("W2", TensorProto.FLOAT, [1024, 1], w2.ravel().tolist()),
        ],
    )
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(model))
    vocab = tmp_path / "vocab.json"
    f.save(vocab)
    return model, vocab, data


@pytest.mark.parametrize("candidate", ["int8_dynamic_s8", "fp16"])
def test_vocab_import_gates_robustness_on_perturbed_raw_fields(tmp_path: Path, candidate: str) -> None:
    model, vocab, data = _vocab_setup(tmp_path)
    repo = tmp_path / "repo"
    cfg = parse_import_config(
        {
            "model": {"name": "ctr-vocab", "onnx": str(model), "vocab": str(vocab)},
            "data": {"eval": str(data), "label": "clicked"},
            "gate": {"metric": "auc", "max_flip_increase": 0.02},
            "candidates": ["fp32", candidate],  # fp16: its kept-FP32 input Casts are sorted before model_raw.onnx
            "latency": {"batch_sizes": [1, 64], "repeats": 5},
            "robustness": {"rows": 100},
        }
    )
    result = run_import(cfg, repo)
    report = result.robustness
    assert report["max_flip_increase"] == 0.02 and report["set"]["clean_rows"] == 100, report
    assert report["set"]["kinds"] == ["cat_missing", "cat_unseen", "dense_jitter"], report
    ref = result.candidates[0].robustness
    assert ref["status"] == "reference" and 0 < ref["by_kind"]["cat_missing"] <= 1, ref  # the fields move scores
    cand = next(c for c in result.candidates if c.name == candidate)
    if cand.status in ("passed", "failed") and cand.robustness.get("flip_rate") is not None:
        r = cand.robustness
        over = r["flip_rate"] > r["limit"] and r["p_value"] < r["significance"]  # over the margin, not by chance
        assert over == (cand.status == "failed"), (cand.status, cand.robustness)
    assert list(result.published) == ["fp32", candidate], (result.published, cand.status, cand.error)
    for version in list_versions(repo, "ctr-vocab"):
        m = read_manifest(repo / "ctr-vocab" / str(version))
        assert m.task == "ctr" and m.robustness is not None and m.robustness.status in ("reference", "passed"), m
        assert m.robustness.flip_rate is not None, m.robustness
