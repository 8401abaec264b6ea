"""Perturbations are seeded and change their input; flip rates count decision changes; the rule refuses a\ncandidate that flips more than FP32 allows, and the report shows it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.manifest import Robustness
from compress.candidates import Candidate
from compress.config import PROJECT_ROOT, CompressConfig, RobustnessSection, load_config
from compress.gate import GateResult
from compress.report import markdown
from compress.robustness import RobustnessSet, check, excess_p_value, flip_rate
from compress.robustness.measure import apply
from compress.robustness.perturb import (
    UNSEEN,
    case_punct,
    drop_history_item,
    drop_word,
    partners,
    perturb_columns,
    perturb_texts,
    sample,
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
    assert check(0.05, 0.03, 0.01, p_value=0.2, alpha=0.05) == "", "an excess within chance must pass"
    reason = check(0.05, 0.03, 0.01, p_value=0.01, alpha=0.05)
    assert "limit 4.00 %" in reason and "p = 0.01 < [gate].flip_significance 0.05" in reason, reason


def test_excess_p_value_is_a_paired_exact_test_on_the_rows_where_one_model_flips() -> None:
    both = np.ones(50, bool)
    assert excess_p_value(both, both) == 1.0, "no row differs: nothing to test"
    # the search figures that motivated it: 75 rows, the candidate alone flips 3 more than FP32 alone
    fp32 = np.zeros(75, bool)
    fp32[:2] = True
    cand = np.zeros(75, bool)
    cand[2:7] = True
    p = excess_p_value(cand, fp32)  # 5 vs 2 of 7 discordant rows: P(X >= 5 | Binom(7, 1/2)) = 29/128
    assert abs(p - 29 / 128) < 1e-12, p
    many = np.zeros(400, bool)
    many[:30] = True  # 30 rows only the candidate flips, 0 only FP32: clearly not chance
    assert excess_p_value(many, np.zeros(400, bool)) < 1e-8
    assert excess_p_value(np.zeros(75, bool), cand) == 1.0, "fewer flips than FP32 is never an excess"


def test_sample_and_partners_are_seeded_and_never_self() -> None:
    a, b = sample(1000, 50, seed=4), sample(1000, 50, seed=4)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 50 and a.tolist() == sorted(a.tolist()), a
    assert sample(30, 50, seed=4).tolist() == list(range(30)), "fewer rows than asked: all of them"
    p = partners(40, seed=4)
    assert (p != np.arange(40)).all() and p.min() >= 0 and p.max() < 40, p


def test_ranked_id_lists_flip_on_a_changed_set_not_on_order() -> None:
    clean = np.array([[4, 5, 6, 9], [1, 2, 3, 9]])
    pert = np.array([[6, 5, 4, 1], [3, 2, 1, 8], [4, 5, 7, 6], [1, 2, 3, 4]])  # only row 2's set changed (7 for 6)
    r = flip_rate(clean, pert, _set("topk_ids", k=3))
    assert r["flip_rate"] == 0.25 and r["by_kind"] == {"a": 0.0, "b": 0.5}, r


# ---- the rule applied to built candidates (tiny ONNX models; a fake task supplies the perturbation set) ----


def _scaled_model(path: Path, scale: list[float]) -> Path:
    """``y = x * scale``: the scale tilts the argmax of two nearly equal logits."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(np.asarray(scale, np.float32), "s")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


class _Task:
    """Clean rows [1, 0.95] perturbed to [1, 0.90]: FP32 (scale 1) keeps class 0 on both; a model scaling
    class 1 by 1.1 says 1 on the clean row and 0 on the perturbed one (every row flips)."""

    def robustness_set(self, r: RobustnessSection) -> RobustnessSet:
        n = r.rows
        clean = np.tile(np.array([[1.0, 0.95]], np.float32), (n, 1))
        pert = np.tile(np.array([[1.0, 0.90]], np.float32), (n, 1))
        return RobustnessSet({"x": clean}, {"x": pert}, np.arange(n), ["tilt"] * n, "argmax", "y")


def _cands(tmp_path: Path) -> list[Candidate]:
    ok = GateResult(True, "auc >= 0.999 x FP32", {"auc": 0.8})
    return [
        Candidate("fp32", "reference", _scaled_model(tmp_path / "fp32.onnx", [1.0, 1.0])),
        Candidate("steady", "passed", _scaled_model(tmp_path / "steady.onnx", [1.0, 1.0]), gate=ok),
        Candidate("flaky", "passed", _scaled_model(tmp_path / "flaky.onnx", [1.0, 1.1]), gate=ok),
        Candidate("inaccurate", "failed", _scaled_model(tmp_path / "bad.onnx", [1.0, 1.1]), gate=ok),
    ]


def _cfg(**robustness: object) -> CompressConfig:
    cfg = load_config(PROJECT_ROOT / "compress" / "configs" / "ad_ctr.toml")
    return cfg.model_copy(update={"robustness": RobustnessSection.model_validate({"rows": 12, **robustness})})


def test_a_candidate_flipping_more_than_fp32_allows_is_refused_with_the_reason(tmp_path: Path) -> None:
    cands = _cands(tmp_path)
    entry = apply(cands, _Task(), _cfg())  # type: ignore[arg-type]
    fp32, steady, flaky, inaccurate = (c.robustness for c in cands)
    assert fp32["status"] == "reference" and fp32["flip_rate"] == 0.0 and fp32["perturbed_rows"] == 12, fp32
    assert steady["status"] == "passed" and steady["margin"] == 0.01 and cands[1].status == "passed", steady
    assert flaky["status"] == "failed" and flaky["flip_rate"] == 1.0 and flaky["limit"] == 0.01, flaky
    assert cands[2].status == "failed" and cands[2].gate is not None and not cands[2].gate.passed, cands[2]
    assert "robustness: flip rate 100.00 % > limit 1.00 %" in cands[2].gate.reason, cands[2].gate.reason
    assert inaccurate["status"] == "not_measured" and cands[3].gate is not None and cands[3].gate.passed, inaccurate
    assert entry["set"]["clean_rows"] == 12 and entry["max_flip_increase"] == 0.01, entry
    Robustness(**flaky)  # the manifest accepts the block as recorded


def test_disabled_or_missing_hook_records_why_the_gate_was_skipped(tmp_path: Path) -> None:
    cands = _cands(tmp_path)
    entry = apply(cands, _Task(), _cfg(enabled=False))  # type: ignore[arg-type]
    assert entry["skipped"].startswith("disabled in the config"), entry
    assert all(c.robustness["status"] == "skipped" for c in cands) and cands[2].status == "passed", cands
    entry = apply(_cands(tmp_path), object(), _cfg())  # type: ignore[arg-type]
    assert "no robustness_set hook" in entry["skipped"], entry


def test_report_shows_each_flip_rate_and_the_rule(tmp_path: Path) -> None:
    cands = _cands(tmp_path)
    for c in cands:
        c.bytes, c.metrics = 1000, {"auc": 0.8}
    entry = apply(cands, _Task(), _cfg())  # type: ignore[arg-type]
    text = markdown({"candidates": [c.as_dict() for c in cands], "robustness": entry, "gate_rule": "auc"})
    row = next(line for line in text.splitlines() if line.startswith("| flaky |"))
    assert "100.00 %" in row and "robustness: flip rate" in row, row
    assert (
        "Robustness ('flips' column): 12 perturbed copies of 12 test rows (tilt, seed 0; one flip = 8.33 pp)" in text
    ), text
    assert "Rule: flip rate <= FP32's + 1.00 pp" in text, text
