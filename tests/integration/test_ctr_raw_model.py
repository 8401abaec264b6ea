"""Published ad-ctr versions carry ``model_raw.onnx``: featurization in the graph, same scores on every test row."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from app.repository import load_verified
from app.tasks.ctr.features import MISSING_ID, RARE_ID
from compress.ctr.feature_graph import RAW_MODEL_ROLE, feature_graph_for, raw_arrays
from compress.ctr.task import CtrTask
from tests.fixtures.compress_run import CompressRun

MODEL = "ad-ctr"


def session(path_or_model: Any) -> ort.InferenceSession:
    data = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def as_json(record: dict[str, str], dense: list[str]) -> dict[str, Any]:
    """A CSV row as a request carries it: numbers for counts, absent fields when empty."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        if v != "":
            out[k] = int(v) if k in dense else v
    return out


@pytest.mark.parametrize("version", [1, 2])
def test_raw_model_matches_the_published_model_on_every_test_row(ctr_compress_run: CompressRun, version: int) -> None:
    vdir = ctr_compress_run.repo / MODEL / str(version)
    _, manifest = load_verified(ctr_compress_run.repo, MODEL, version)  # sha256 of model_raw.onnx included
    assert manifest.aux(RAW_MODEL_ROLE).path == "model_raw.onnx"
    task = CtrTask(ctr_compress_run.cfg)
    task.prepare(vdir)  # the published featurizer, the real Criteo split
    f = task.featurizer
    csv_rows = task.test_records  # values as the log has them: strings, "" = missing
    json_rows = [as_json(r, f.dense_columns) for r in csv_rows]
    # floats like 5.0, numeric strings, whitespace, unseen codes and nulls on top of the real rows
    odd = [{**r, "I1": float(r.get("I1", 0)), "C1": f" {r.get('C1', '')} ", "C2": "never-seen", "I2": None}
           for r in json_rows[:200]]  # fmt: skip
    model, raw = session(vdir / "model.onnx"), session(vdir / "model_raw.onnx")
    features = session(feature_graph_for(f, onnx.load(str(vdir / "model.onnx"))))
    for rows in (csv_rows, json_rows, odd):
        ref = f.transform_records(rows)
        arrays = raw_arrays(rows, f)
        dense, sparse = features.run(["dense", "sparse"], arrays)
        np.testing.assert_array_equal(sparse, ref["sparse"])  # ids exactly equal
        np.testing.assert_allclose(dense, ref["dense"], rtol=0, atol=1e-6)
        (p_ref,) = model.run(["pctr"], ref)
        (p_raw,) = raw.run(["pctr"], arrays)
        np.testing.assert_allclose(p_raw, p_ref, rtol=0, atol=1e-6)
        # the rows do exercise missing values and the rare/unseen bucket
        assert (ref["sparse"] == MISSING_ID).any() and (ref["sparse"] == RARE_ID).any()
    assert len(csv_rows) == len(task.split.test) > 1000


def test_a_candidate_without_usable_features_scores_near_the_training_base_rate(
    ctr_compress_run: CompressRun,
) -> None:
    """No features at all, or only unseen values: both serving paths score near the prior, not far above it."""
    task = CtrTask(ctr_compress_run.cfg)
    for version in (1, 2):
        vdir = ctr_compress_run.repo / MODEL / str(version)
        task.prepare(vdir)
        base = float(task.data["train"].y.mean())
        f = task.featurizer
        rows = [{}, {c: f"never-seen-{c}" for c in f.categorical_columns}]
        model, raw = session(vdir / "model.onnx"), session(vdir / "model_raw.onnx")
        (p_ref,) = model.run(["pctr"], f.transform_records(rows))
        (p_raw,) = raw.run(["pctr"], raw_arrays(rows, f))
        for name, p in zip(("empty", "all-unseen"), p_ref.reshape(-1), strict=True):
            assert base / 1.5 <= p <= base * 1.5, f"v{version} {name} row scored {p:.4f}; base rate {base:.4f}"
        np.testing.assert_allclose(p_raw, p_ref, rtol=0, atol=1e-6)
