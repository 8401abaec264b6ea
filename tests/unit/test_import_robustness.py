"""The perturbation set of an imported model: raw fields through the vocabulary, float tensors without one, and
the reasons recorded when there is nothing to perturb or no decision to read."""

from __future__ import annotations

import numpy as np

from app.manifest import TensorSpec
from app.tasks.ctr.vocab import VocabFeaturizer
from compress.config import RobustnessSection
from compress.imported.data import Rows
from compress.imported.robustness import robustness_set
from tests.unit.test_ctr_vocab import DOC

SCORE = TensorSpec(name="p", dtype="FP32", shape=[-1, 1])
R = RobustnessSection(rows=40, seed=3)


def _raw_rows(n: int) -> tuple[VocabFeaturizer, Rows]:
    f = VocabFeaturizer.from_dict(DOC)
    rng = np.random.default_rng(0)
    recs = [
        {"C1": ["a", "b", "5"][i % 3], "C2": "z", "I1": float(rng.integers(0, 9)), "I2": 0.5 + i, "I3": 3 + i}
        for i in range(n)
    ]
    return f, Rows(f.transform_records(recs), np.arange(n) % 2, None, recs)


def test_vocab_import_perturbs_raw_fields_through_the_vocabulary() -> None:
    f, held = _raw_rows(60)
    inputs = [TensorSpec(name="ids", dtype="INT64", shape=[-1, 2]), TensorSpec(name="x", dtype="FP32", shape=[-1, 4])]
    rset = robustness_set(held, inputs, SCORE, R, f)
    assert not isinstance(rset, str), rset
    assert rset.decision == "pair_order" and rset.partner is not None, rset.describe()
    assert sorted(set(rset.kinds)) == ["cat_missing", "cat_unseen", "dense_jitter"], rset.describe()
    n = len(rset.clean["ids"])
    assert n == 40 and len(rset.kinds) == 3 * n, (n, len(rset.kinds))
    kinds = np.asarray(rset.kinds)
    clean_ids, pert_ids = rset.clean["ids"][rset.source], rset.perturbed["ids"]
    # ids = [C2, C1]; a missing / unseen field becomes that column's missing / unseen id (C1: 1 / 2, C2: 0 / 0)
    for kind, c1_id in (("cat_missing", 1), ("cat_unseen", 2)):
        rows = kinds == kind
        changed = pert_ids[rows] != clean_ids[rows]
        assert changed.sum(axis=1).max() <= 1, f"{kind}: more than one field changed per row"
        c1_rows = changed[:, 1]
        assert c1_rows.any() and np.all(pert_ids[rows][c1_rows, 1] == c1_id), (kind, pert_ids[rows][c1_rows, 1])
    jit = kinds == "dense_jitter"
    assert np.array_equal(pert_ids[jit], clean_ids[jit]), "dense jitter changed a categorical id"
    assert np.any(rset.perturbed["x"][jit] != rset.clean["x"][rset.source][jit]), "dense jitter changed nothing"


def test_tensor_import_jitters_float_columns_but_not_whole_numbers_or_ints() -> None:
    rng = np.random.default_rng(1)
    x = np.c_[rng.normal(size=(50, 3)), rng.integers(0, 7, (50, 1))].astype(np.float32)  # last column: codes
    ids = rng.integers(0, 5, (50, 2))
    held = Rows({"x": x, "ids": ids}, np.zeros(50), None)
    inputs = [TensorSpec(name="x", dtype="FP32", shape=[-1, 4]), TensorSpec(name="ids", dtype="INT64", shape=[-1, 2])]
    rset = robustness_set(held, inputs, TensorSpec(name="logits", dtype="FP32", shape=[-1, 5]), R)
    assert not isinstance(rset, str), rset
    assert rset.decision == "argmax" and set(rset.kinds) == {"dense_jitter"}, rset.describe()
    c, p = rset.clean["x"], rset.perturbed["x"]
    assert np.all(p[:, :3] != c[:, :3]), "a real-valued column was not jittered"
    rel = np.abs(p[:, :3] / c[:, :3] - 1)
    assert rel.max() < 0.5 and rel.mean() < 0.1, f"jitter of {rel.mean():.3f} on average is not ~5 %"
    assert np.array_equal(p[:, 3], c[:, 3]), "a whole-number column (codes) was jittered"
    assert np.array_equal(rset.perturbed["ids"], rset.clean["ids"]), "integer ids were changed"


def test_nothing_to_perturb_or_no_decision_is_a_reason() -> None:
    held = Rows({"ids": np.arange(20).reshape(10, 2)}, np.zeros(10), None)
    got = robustness_set(held, [TensorSpec(name="ids", dtype="INT64", shape=[-1, 2])], SCORE, R)
    assert isinstance(got, str) and "--vocab" in got, got
    floats = Rows({"x": np.linspace(0.1, 2, 20, dtype=np.float32).reshape(10, 2)}, np.zeros(10), None)
    spec = TensorSpec(name="x", dtype="FP32", shape=[-1, 2])
    got = robustness_set(floats, [spec], TensorSpec(name="seq", dtype="FP32", shape=[-1, -1, 4]), R)
    assert isinstance(got, str) and "seq" in got, got
    assert not isinstance(robustness_set(floats, [spec], SCORE, R), str), "a float input was not perturbed"


def test_variable_output_width_is_read_as_the_metric_reads_it() -> None:
    floats = Rows({"x": np.linspace(0.1, 2, 20, dtype=np.float32).reshape(10, 2)}, np.zeros(10), None)
    spec = TensorSpec(name="x", dtype="FP32", shape=[-1, 2])
    out = TensorSpec(name="ctr", dtype="FP32", shape=[-1, -1])  # how exporters often write [batch, 1]
    scores = robustness_set(floats, [spec], out, R)
    top = robustness_set(floats, [spec], out, R, classes=True)
    assert not isinstance(scores, str) and scores.decision == "pair_order", scores
    assert not isinstance(top, str) and top.decision == "argmax", top
