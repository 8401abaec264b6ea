"""Perturbations are seeded and change their input; flip rates count decision changes; the rule refuses."""

from __future__ import annotations

import numpy as np

from compress.robustness import RobustnessSet, check, flip_rate
from compress.robustness.perturb import (
    UNSEEN,
    case_punct,
    drop_history_item,
    drop_word,
    perturb_columns,
    perturb_texts,
    typo,
)

TEXTS = ["where is my parcel", "I want a refund for my broken kettle", "Cancel my order please!"]


def test_text_perturbations_change_the_text_and_are_deterministic() -> None:
    a = perturb_texts(TEXTS, seed=7)
    b = perturb_texts(TEXTS, seed=7)
    assert a[0] == b[0] and a[1] == b[1], f"same seed, different output: {a[0]} vs {b[0]}"
    assert a[1] == ["typo"] * 3 + ["case_punct"] * 3 + ["drop_word"] * 3, a[1]
    assert a[2].tolist() == [0, 1, 2] * 3, a[2]
    for text, src in zip(a[0], a[2], strict=True):
        assert text != TEXTS[src], f"perturbation left {text!r} unchanged"


def test_each_text_perturbation_does_its_one_thing() -> None:
    rng = np.random.default_rng(0)
    t = typo("refund", rng)
    assert t != "refund" and abs(len(t) - 6) <= 1, f"a typo changes at most one character: {t!r}"
    c = case_punct("Where is my parcel", np.random.default_rng(1))
    assert c.rstrip("?.!").lower() == "where is my parcel" and c != "Where is my parcel", c
    d = drop_word("where is my parcel", np.random.default_rng(2))
    assert len(d.split()) == 3 and set(d.split()) < {"where", "is", "my", "parcel"}, d


def test_ctr_perturbations_touch_one_field_or_the_dense_ones() -> None:
    cols = {"I1": ["1", "", "30"], "C1": ["a", "b", "c"], "C2": ["x", "y", "z"]}
    out, kinds, src = perturb_columns(cols, ["I1"], ["C1", "C2"], seed=3)
    assert kinds == ["cat_missing"] * 3 + ["cat_unseen"] * 3 + ["dense_jitter"] * 3, kinds
    assert src.tolist() == [0, 1, 2] * 3, src
    for r in range(3):
        missing = [c for c in ("C1", "C2") if out[c][r] == ""]
        unseen = [c for c in ("C1", "C2") if out[c][3 + r] == UNSEEN]
        assert len(missing) == 1 and len(unseen) == 1, f"row {r}: missing {missing}, unseen {unseen}"
        assert out["C1"][6 + r] == cols["C1"][r], "dense jitter must leave categoricals alone"
    assert out["I1"][7] == "", "a missing dense value stays missing"
    assert float(out["I1"][6]) != 1.0 and abs(float(out["I1"][6]) - 1.0) < 0.5, out["I1"][6]


def test_history_drop_removes_exactly_one_item() -> None:
    h = np.array([[5, 6, 7, 0], [9, 0, 0, 0]])
    out = drop_history_item(h, pad=0, seed=1)
    assert (out[0] != 0).sum() == 2 and set(out[0][out[0] != 0]) < {5, 6, 7}, out[0]
    assert out[1].tolist() == [9, 0, 0, 0], f"a one-item history is kept: {out[1]}"


def _set(decision: str, **kw: object) -> RobustnessSet:
    return RobustnessSet({}, {}, np.array([0, 1, 0, 1]), ["a", "a", "b", "b"], decision, "y", **kw)  # type: ignore[arg-type]


def test_flip_rates_per_decision_kind() -> None:
    clean = np.array([[0.9, 0.1], [0.2, 0.8]])
    pert = np.array([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6], [0.1, 0.9]])
    r = flip_rate(clean, pert, _set("argmax"))
    assert r["flip_rate"] == 0.5 and r["by_kind"] == {"a": 0.5, "b": 0.5}, r
    scores = np.array([0.3, 0.5])
    partner = np.array([1, 0])
    r = flip_rate(scores, np.array([0.6, 0.5, 0.2, 0.1]), _set("pair_order", partner=partner))
    assert r["flip_rate"] == 0.5 and r["by_kind"] == {"a": 0.5, "b": 0.5}, r
    items = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    pert_items = np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0], [0.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    r = flip_rate(items, pert_items, _set("topk", k=2))
    assert r["flip_rate"] == 0.5 and r["by_kind"] == {"a": 0.5, "b": 0.5}, r


def test_rule_refuses_a_candidate_over_the_margin_with_a_reason() -> None:
    assert check(0.035, 0.03, 0.01) == "", "within the margin must pass"
    reason = check(0.05, 0.03, 0.01)
    assert "flip rate 5.00 % > limit 4.00 %" in reason and "FP32 3.00 %" in reason, reason
