"""AUC/logloss against scikit-learn, and the gate rules."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from compress.config import GateRule
from compress.gate import check, margin
from compress.metrics import logloss, roc_auc

RULES = [
    GateRule(metric="auc", kind="min_ratio", value=0.999),
    GateRule(metric="logloss", kind="max_rel_increase", value=0.005),
]


@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_logloss_match_sklearn(ties: bool) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.2, 2000), 0.01, 0.99)
    if ties:
        p = np.clip(np.round(p, 1), 0.05, 0.95)  # no exact 0/1: the two clip epsilons differ
    assert roc_auc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert logloss(p, y) == pytest.approx(log_loss(y, p), rel=1e-9)


def test_auc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.array([0.1, 0.2]), np.array([1, 1]))


def test_gate_passes_within_limits_and_fails_with_reasons() -> None:
    fp32 = {"auc": 0.75, "logloss": 0.45}
    ok = check({"auc": 0.7493, "logloss": 0.4522}, fp32, RULES)
    assert ok.passed and ok.numbers["auc_limit"] == pytest.approx(0.74925)
    bad = check({"auc": 0.7490, "logloss": 0.4530}, fp32, RULES)
    assert not bad.passed
    assert len(bad.reasons) == 2 and "auc 0.74900 < limit" in bad.reasons[0]
    assert margin({"auc": 0.7490, "logloss": 0.45}, fp32, RULES) < 0 < margin(fp32, fp32, RULES)


def test_gate_abs_drop_rule_and_missing_metric() -> None:
    rules = [GateRule(metric="auroc", kind="max_abs_drop", value=0.01)]
    assert check({"auroc": 0.905}, {"auroc": 0.91}, rules).passed
    assert not check({"auroc": 0.899}, {"auroc": 0.91}, rules).passed
    assert "not measured" in check({}, {"auroc": 0.91}, rules).reason
