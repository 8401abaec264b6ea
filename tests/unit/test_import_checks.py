"""``compress import`` refusals and skips: each names the input, label or step and what was expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper

from app.manifest import TensorSpec
from compress.errors import ConfigError, DataError, ExportError
from compress.imported.candidates import GraphFacts, check_names
from compress.imported.config import parse_import_config
from compress.imported.data import load_rows, split
from compress.imported.metrics import get_metric
from compress.imported.source import load_source


def _linear(path: Path, n_in: int = 3, opset: int = 17, batch: str | int = "n", hidden: int = 4) -> Path:
    """``y = sigmoid(x @ W)``: one FP32 input [batch, n_in], one MatMul with a constant weight."""
    w = helper.make_tensor("W", TensorProto.FLOAT, [n_in, hidden], np.full(n_in * hidden, 0.1, np.float32).tolist())
    v = helper.make_tensor("V", TensorProto.FLOAT, [hidden, 1], np.full(hidden, 0.2, np.float32).tolist())
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="mm0"),
            helper.make_node("MatMul", ["h", "V"], ["z"], name="mm1"),
            helper.make_node("Sigmoid", ["z"], ["p"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, n_in])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [batch, 1])],
        [w, v],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8), str(path))
    return path


def _data(raw: dict[str, object]) -> object:
    return parse_import_config(
        {"model": {"name": "m", "onnx": "m.onnx"}, "data": raw, "gate": {"metric": "auc"}}, "test"
    ).data


def test_metric_registry_agrees_with_sklearn_and_refuses_wrong_labels() -> None:
    from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error, ndcg_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    assert abs(get_metric("auc")(p, y) - roc_auc_score(y, p)) < 1e-12
    assert abs(get_metric("auc")(np.stack([1 - p, p], 1), y) - roc_auc_score(y, p)) < 1e-12, "[N, 2] -> column 1"
    assert abs(get_metric("logloss")(p, y) - log_loss(y, np.clip(p, 1e-7, 1 - 1e-7))) < 1e-9
    r = rng.normal(size=500)
    assert abs(get_metric("mse")(r, y) - mean_squared_error(y, r)) < 1e-12
    assert abs(get_metric("mae")(r, y) - mean_absolute_error(y, r)) < 1e-12
    groups = np.repeat(np.arange(50), 10)
    gains = rng.integers(0, 3, 500)
    want = np.mean(
        [ndcg_score([gains[groups == g]], [p[groups == g]], k=5) for g in range(50) if gains[groups == g].any()]
    )
    assert abs(get_metric("ndcg@5")(p, gains, groups) - want) < 1e-9
    assert get_metric("accuracy")(np.stack([1 - p, p], 1), y) == float(np.mean((p > 0.5) == y))
    assert get_metric("auc").higher_is_better and not get_metric("logloss").higher_is_better

    with pytest.raises(DataError, match=r"auc needs a binary 0/1 label; the label has values 0, 1, 2"):
        get_metric("auc")(p, y + (np.arange(500) % 3 == 0))
    with pytest.raises(DataError, match=r"logloss needs probabilities in \[0, 1\]"):
        get_metric("logloss")(p * 4 - 2, y)
    with pytest.raises(DataError, match=r"ndcg@5 ranks rows within a query: name the query column"):
        get_metric("ndcg@5")(p, gains)
    with pytest.raises(ConfigError, match=r"unknown metric 'f1'; known: auc, logloss, accuracy, mse, mae, ndcg@K"):
        get_metric("f1")


def test_parquet_mismatches_name_the_input_and_what_it_expected(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.1, 0.2], "y": [0, 1, 0], "s": ["x", "y", "z"]})
    path = tmp_path / "eval.parquet"
    frame.to_parquet(path, index=False)
    x3 = [TensorSpec(name="x", dtype="FP32", shape=[-1, 3])]
    x2 = [TensorSpec(name="x", dtype="FP32", shape=[-1, 2])]

    with pytest.raises(DataError, match=r"label column 'clicked' is missing \(columns: \['a', 'b', 'y', 's'\]\)"):
        load_rows(path, _data({"eval": "e", "label": "clicked"}), x2)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"feature columns \['s'\] are not numeric \(input 'x' is FP32\)"):
        load_rows(path, _data({"eval": "e", "label": "y"}), x3)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"input 'x' expects shape \[batch, 3\], but eval.parquet gives \[batch, 2\]"):
        load_rows(path, _data({"eval": "e", "label": "y", "features": ["a", "b"]}), x3)  # type: ignore[arg-type]
    two = [*x2, TensorSpec(name="ids", dtype="INT64", shape=[-1, 4])]
    with pytest.raises(DataError, match=r"the model has 2 inputs \['x', 'ids'\]; a Parquet file feeds exactly one"):
        load_rows(path, _data({"eval": "e", "label": "y", "features": ["a", "b"]}), two)  # type: ignore[arg-type]
    rows = load_rows(path, _data({"eval": "e", "label": "y", "features": ["b", "a"]}), x2)  # type: ignore[arg-type]
    want = np.array([[0.5, 1.0], [0.1, 2.0], [0.2, 3.0]], np.float32)
    assert np.array_equal(rows.feeds["x"], want), f"--features orders the columns: {rows.feeds['x']}"

    npz = tmp_path / "eval.npz"
    np.savez(npz, x=np.zeros((3, 2), np.float32), y=np.array([0, 1, 0]))
    with pytest.raises(DataError, match=r"no array for model input 'ids' INT64 \[batch, 4\] \(arrays: \['x', 'y'\]\)"):
        load_rows(npz, _data({"eval": "e", "label": "y"}), two)  # type: ignore[arg-type]
    assert load_rows(npz, _data({"eval": "e", "label": "y"}), x2).feeds["x"].shape == (3, 2)  # type: ignore[arg-type]


def test_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    npz = tmp_path / "eval.npz"
    np.savez(npz, x=np.arange(200, dtype=np.float32).reshape(100, 2), y=np.arange(100) % 2)
    rows = load_rows(npz, _data({"eval": "e", "label": "y"}), [TensorSpec(name="x", dtype="FP32", shape=[-1, 2])])  # type: ignore[arg-type]
    cal, held, desc = split(rows, 0.2, seed=0)
    cal2, held2, _ = split(rows, 0.2, seed=0)
    assert (len(cal), len(held)) == (20, 80) and desc["held_out_rows"] == 80, desc
    assert np.array_equal(cal.feeds["x"], cal2.feeds["x"]) and np.array_equal(held.labels, held2.labels)
    assert not set(cal.feeds["x"][:, 0].tolist()) & set(held.feeds["x"][:, 0].tolist()), "calibration rows held out"


def test_model_problems_are_errors_or_skips_with_reasons(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ExportError, match=r"input 'x' has shape \[1, 3\]: the first axis must be a variable batch"):
        load_source(_linear(tmp_path / "fixed.onnx", batch=1), work)
    with pytest.raises(ExportError, match=r"does not exist"):
        load_source(tmp_path / "nope.onnx", work)
    old = GraphFacts.of(_linear(tmp_path / "old.onnx", opset=9, hidden=4096))
    assert old.skip_reason("int8_dynamic_u8", per_channel=True) == (
        "opset 9 is too old: int8_dynamic_u8 needs opset >= 10 (re-export with a newer opset)"
    )
    assert "int8_qdq needs opset >= 13" in str(old.skip_reason("int8_qdq", per_channel=True))
    assert "weight-only INT8 needs opset >= 13" in str(old.skip_reason("int8_weights", per_channel=True))
    small = GraphFacts.of(_linear(tmp_path / "small.onnx"))
    assert small.skip_reason("int8_qdq", per_channel=True) is None and small.matmuls == 2
    assert "no 2-D FP32 weight with >= 4096 elements" in str(small.skip_reason("int8_weights", per_channel=True))
    assert "training loop" in str(small.skip_reason("pruned", per_channel=True))
    with pytest.raises(ConfigError, match=r"candidates \['int8_magic'\]"):
        check_names(["fp32", "int8_magic"])

    zipmap = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
            [helper.make_value_info("y", helper.make_sequence_type_proto(helper.make_tensor_type_proto(1, None)))],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
    )
    onnx.save(zipmap, str(tmp_path / "zipmap.onnx"))
    with pytest.raises(ExportError, match=r"output 'y' is a sequence_type, not a tensor.*zipmap"):
        load_source(tmp_path / "zipmap.onnx", work)


def test_config_file_and_flags_build_the_same_config(tmp_path: Path) -> None:
    from compress.cli import build_parser
    from compress.imported.cli import config_from_args

    toml = tmp_path / "imp.toml"
    toml.write_text(
        '[model]\nname = "m"\nonnx = "m.onnx"\n[data]\neval = "e.parquet"\nlabel = "y"\n[gate]\nmetric = "auc"\n'
    )
    from_file = config_from_args(build_parser().parse_args(["import", "--config", str(toml), "--repo", "r"]))
    flags = ["import", "m.onnx", "--data", "e.parquet", "--label", "y", "--metric", "auc", "--name", "m", "--repo", "r"]
    assert config_from_args(build_parser().parse_args(flags)) == from_file
    with pytest.raises(ConfigError, match=r"missing --label, --metric"):
        config_from_args(build_parser().parse_args(["import", "m.onnx", "--data", "e", "--name", "m", "--repo", "r"]))
    with pytest.raises(ConfigError, match=r"unknown metric 'rocauc'"):
        parse_import_config(
            {"model": {"name": "m", "onnx": "m"}, "data": {"eval": "e", "label": "y"}, "gate": {"metric": "rocauc"}}
        )
