"""CTR featurization as an ONNX graph must reproduce ``CtrFeaturizer`` exactly (ids) and closely (scores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from app.tasks.ctr.features import MISSING_ID, RARE_ID, CtrFeaturizer, FeatureError
from compress.ctr.feature_graph import (
    CAT_RAW,
    DENSE_RAW,
    build_feature_graph,
    build_raw_model,
    check_raw_model,
    merge_with_model,
    raw_arrays,
    write_raw_model,
)


def fitted() -> CtrFeaturizer:
    cols = {"I1": ["1", "3", "", "-5", "100"], "I2": ["0", "2", "2", "", "7"],
            "C1": ["a", "a", "b", "", "0012"], "C2": ["7", "7", "7", "8", "8"]}  # fmt: skip
    return CtrFeaturizer(["I1", "I2"], ["C1", "C2"], min_freq=2).fit(cols)


# Every kind of value a request may carry: numeric strings, floats like 5.0, whitespace, null, NaN,
# unseen and absent fields, negatives, booleans and numbers in categorical fields.
EDGE_ROWS: list[dict[str, Any]] = [
    {"I1": 3, "I2": 2, "C1": "a", "C2": 8},
    {"I1": "3", "I2": "  2 ", "C1": " a ", "C2": "8"},
    {"I1": 3.0, "I2": 2.5, "C1": "a", "C2": 8.0},
    {"I1": None, "I2": float("nan"), "C1": None, "C2": float("nan")},
    {"I1": "", "C1": "", "C2": "   "},
    {},
    {"I1": -5, "I2": 1e300, "C1": "zzz", "C2": 9},
    {"I1": 16777217, "I2": 0.1, "C1": True, "C2": 7.5},
    {"I1": "nan", "C1": "\u00a0a\u2003", "C2": "７"},
    {"unrelated": 1, "C1": "0012", "C2": "\t7\n"},
]


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_features(f: CtrFeaturizer, rows: list[dict[str, Any]], **kw: Any) -> dict[str, np.ndarray]:
    dense, sparse = session(build_feature_graph(f, **kw)).run(["dense", "sparse"], raw_arrays(rows, f))
    return {"dense": dense, "sparse": sparse}


@pytest.mark.parametrize(("opset", "encoder"), [(13, "per_field"), (17, "per_field"), (18, "per_field"),
                                                (20, "per_field"), (20, "joint")])  # fmt: skip
def test_graph_features_equal_the_reference_on_every_kind_of_value(opset: int, encoder: Any) -> None:
    f = fitted()
    ref, got = f.transform_records(EDGE_ROWS), run_features(f, EDGE_ROWS, opset=opset, encoder=encoder)
    np.testing.assert_array_equal(got["sparse"], ref["sparse"])
    np.testing.assert_array_equal(got["dense"], ref["dense"])  # float64 inside the graph, like the reference
    assert got["sparse"][3].tolist() == [MISSING_ID, MISSING_ID] and got["sparse"][6].tolist() == [RARE_ID, RARE_ID]
    assert got["sparse"][1].tolist() == got["sparse"][0].tolist() == got["sparse"][2].tolist()


def test_raw_arrays_canonicalise_like_cat_key() -> None:
    raw = raw_arrays(EDGE_ROWS[:5], fitted())
    assert raw[CAT_RAW].tolist() == [["a", "8"], ["a", "8"], ["a", "8"], ["", ""], ["", ""]]
    assert raw[DENSE_RAW].dtype == np.float64 and raw[DENSE_RAW].shape == (5, 2)
    assert np.isnan(raw[DENSE_RAW][3:]).all() and raw[DENSE_RAW][1].tolist() == [3.0, 2.0]


@pytest.mark.parametrize("bad", ["abc", True, float("inf"), "-inf", [1], 10**400])
def test_bad_dense_values_raise_feature_error_like_the_reference(bad: object) -> None:
    f = fitted()
    with pytest.raises(FeatureError, match="I1"):
        raw_arrays([{"I1": 1}, {"I1": bad}], f)
    if bad != 10**400:  # the reference lets float()'s OverflowError through for ints beyond float64
        with pytest.raises(FeatureError, match="I1"):
            f.transform_records([{"I1": 1}, {"I1": bad}])


def test_joint_encoder_needs_string_concat_opset() -> None:
    with pytest.raises(ValueError, match="opset >= 20"):
        build_feature_graph(fitted(), opset=17, encoder="joint")
    with pytest.raises(ValueError, match="opset >= 13"):
        build_feature_graph(fitted(), opset=12)


def test_merged_model_scores_the_fixture_rows_like_the_reference(ctr_artifacts: Path, tmp_path: Path) -> None:
    """The trained fixture model (real Criteo rows): one graph raw -> pctr, published by ``write_raw_model``."""
    from tests.fixtures.ctr_model import raw_records

    f = CtrFeaturizer.load(ctr_artifacts / "preprocess.json")
    rows = raw_records(500) + EDGE_ROWS
    assert write_raw_model(f, ctr_artifacts / "model.onnx", tmp_path, check_records=rows) == {
        "raw_model": "model_raw.onnx"
    }
    raw = onnx.load(str(tmp_path / "model_raw.onnx"))
    assert [i.name for i in raw.graph.input] == [DENSE_RAW, CAT_RAW] and [o.name for o in raw.graph.output] == ["pctr"]
    (ref,) = session(onnx.load(str(ctr_artifacts / "model.onnx"))).run(["pctr"], f.transform_records(rows))
    (got,) = session(raw).run(["pctr"], raw_arrays(rows, f))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_a_raw_graph_that_scores_differently_is_refused(ctr_artifacts: Path) -> None:
    from tests.fixtures.ctr_model import raw_records

    f = CtrFeaturizer.load(ctr_artifacts / "preprocess.json")
    model = onnx.load(str(ctr_artifacts / "model.onnx"))
    wrong = CtrFeaturizer.from_dict({**f.to_dict(), "dense_mean": [m + 1.0 for m in f.dense_mean]})
    with pytest.raises(ValueError, match="differs from the model"):
        check_raw_model(build_raw_model(wrong, model), model, f, raw_records(50))


def test_merge_refuses_a_model_with_other_inputs(ctr_artifacts: Path) -> None:
    f = CtrFeaturizer.load(ctr_artifacts / "preprocess.json")
    model = onnx.load(str(ctr_artifacts / "model.onnx"))
    model.graph.input[0].name = "features"
    with pytest.raises(ValueError, match="do not match the feature graph outputs"):
        merge_with_model(build_feature_graph(f), model)


def test_the_serving_half_does_not_load_onnx() -> None:
    """The server imports ``raw_arrays`` on its hot path: numpy only, no onnx / onnxruntime."""
    import json
    import subprocess
    import sys

    code = "import json, sys, app.tasks.ctr.raw\nprint(json.dumps([m in sys.modules for m in ('onnx', 'onnxruntime', 'torch')]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, False, False]
