"""Feature vocabularies of an imported CTR model: the in-graph featurization equals the reference, bad documents
and vocabularies that do not fit the model are refused naming the column or input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from app.manifest import TensorSpec
from app.tasks.ctr.raw import raw_arrays
from app.tasks.ctr.vocab import VocabFeaturizer, load_featurizer
from compress.ctr.feature_graph import check_raw_model
from compress.ctr.vocab_graph import build_vocab_raw_model
from compress.errors import ConfigError
from compress.imported.vocab import load_vocab

DOC: dict[str, Any] = {
    "format": "shopinfer-ctr-vocab-1",
    "inputs": {"ids": ["C2", "C1"], "x": ["I2", "C1", "I1", "I3"]},
    "dtypes": {"ids": "INT64", "x": "FP32"},
    "categorical": {
        "C1": {"index": {"a": 3, "b": 4, "5": 7}, "missing": 1, "unseen": 2},
        "C2": {"index": {"z": 1}},
    },
    "dense": {
        "I1": {"fill": 0, "clip_min": 0, "log1p": True, "mean": 0.5, "std": 2.0},
        "I2": {"fill": -1.5},
        "I3": {"clip_min": 2, "mean": 1},
    },
}
RECORDS: list[dict[str, Any]] = [
    {"C1": "a", "C2": "z", "I1": 3, "I2": 0.25, "I3": 10},
    {"C1": " b ", "I1": None, "I3": -4},  # whitespace stripped, C2 and I2 absent
    {"C1": 5, "C2": "y", "I1": -7, "I2": None},  # int 5 is the key "5"; "y" unseen; negative clipped before log1p
    {"C1": 5.0, "C2": None, "I1": float("nan"), "I2": 1e12, "I3": "3"},  # 5.0 is "5"; numeric text is a number
    {"C1": "never-seen", "I1": 123456789, "I2": -0.0},
    {},
]


def _identity_model(path: Path) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["ids"], ["ids_out"]), helper.make_node("Identity", ["x"], ["x_out"])],
        "id",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 2]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4]),
        ],
        [
            helper.make_tensor_value_info("ids_out", TensorProto.INT64, ["n", 2]),
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, ["n", 4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return model


def test_reference_featurizer_applies_the_documented_transforms() -> None:
    f = VocabFeaturizer.from_dict(DOC)
    out = f.transform_records(RECORDS)
    assert out["ids"].dtype == np.int64 and out["x"].dtype == np.float32, {k: v.dtype for k, v in out.items()}
    assert out["ids"].tolist() == [[1, 3], [0, 4], [0, 7], [0, 7], [0, 2], [0, 1]], out["ids"].tolist()
    want_row0 = [0.25, 3, (math.log1p(3) - 0.5) / 2, 10 - 1]
    np.testing.assert_allclose(out["x"][0], want_row0, rtol=1e-6, err_msg="row 0: I2 as is, C1 id, I1 log1p, I3 - 1")
    want_row2 = [-1.5, 7, (0 - 0.5) / 2, (2 - 1)]  # I2 missing -> fill, I1 clipped to 0, I3 absent -> fill 0 -> 2
    np.testing.assert_allclose(out["x"][2], want_row2, rtol=1e-6, err_msg="row 2: fill, clip, fill-then-clip")


def test_vocab_graph_equals_the_reference_on_every_row(tmp_path: Path) -> None:
    f = VocabFeaturizer.from_dict(DOC)
    model = _identity_model(tmp_path / "m.onnx")
    raw = build_vocab_raw_model(f, model)
    assert {i.name for i in raw.graph.input} == {"dense_raw", "cat_raw"}, [i.name for i in raw.graph.input]
    diff = check_raw_model(raw, model, f, RECORDS, atol=1e-6)
    assert diff <= 1e-6, f"graph vs reference differ by {diff}"
    arrays = raw_arrays(RECORDS, f)
    assert arrays["cat_raw"].shape == (len(RECORDS), 2) and arrays["dense_raw"].shape == (len(RECORDS), 3), {
        k: v.shape for k, v in arrays.items()
    }


def test_published_state_round_trips_through_the_task_loader(tmp_path: Path) -> None:
    f = VocabFeaturizer.from_dict(DOC)
    f.save(tmp_path / "vocab.json")
    loaded = load_featurizer(tmp_path / "vocab.json")
    assert isinstance(loaded, VocabFeaturizer), type(loaded)
    for name, want in f.transform_records(RECORDS).items():
        np.testing.assert_array_equal(loaded.transform_records(RECORDS)[name], want, err_msg=name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "v0"}, r"format is 'v0'"),
        ({"inputs": {"x": ["I1", "C9"]}}, r"inputs\.x: columns \['C9'\] are neither"),
        ({"dense": {**DOC["dense"], "C1": {}}}, r"\['C1'\] are both categorical and dense"),
        ({"categorical": {"C1": {"index": {"": 1}}, "C2": {"index": {}}}}, r"categorical\.C1\.index: the empty"),
        ({"categorical": {"C1": {"index": {"a": "3"}}, "C2": {"index": {}}}}, r"C1\.index\['a'\] must be an int"),
        ({"dense": {**DOC["dense"], "I1": {"log1p": True}}}, r"dense\.I1: log1p needs clip_min > -1"),
        ({"dense": {**DOC["dense"], "I1": {"std": 0}}}, r"dense\.I1\.std must not be 0"),
        ({"dense": {**DOC["dense"], "I1": {"scale": 2}}}, r"dense\.I1: unknown keys \['scale'\]"),
        ({"dtypes": {"x": "FP8"}}, r"dtypes \{'x': 'FP8'\}"),
    ],
)
def test_bad_vocabulary_documents_are_refused_naming_the_column(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VocabFeaturizer.from_dict({**DOC, **change})


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([TensorSpec(name="X", dtype="FP32", shape=[-1, 4])], r"'inputs' names \['ids', 'x'\], but the model's"),
        (
            [TensorSpec(name="ids", dtype="INT64", shape=[-1, 2]), TensorSpec(name="x", dtype="FP32", shape=[-1, 5])],
            r"input 'x' has shape \[-1, 5\]; vocab\.json gives it \[batch, 4\]",
        ),
        (
            [TensorSpec(name="ids", dtype="INT32", shape=[-1, 2]), TensorSpec(name="x", dtype="FP32", shape=[-1, 4])],
            r"dtypes\.ids is INT64, but the model's input is INT32",
        ),
    ],
)
def test_a_vocabulary_that_does_not_fit_the_model_is_refused(
    tmp_path: Path, inputs: list[TensorSpec], message: str
) -> None:
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(DOC))
    with pytest.raises(ConfigError, match=message):
        load_vocab(path, inputs)
