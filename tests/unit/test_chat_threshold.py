"""The chatbot's handoff threshold: out-of-scope recall on validation, bounded by in-scope coverage."""

from __future__ import annotations

import numpy as np
import pytest

from compress.chat.config import ReplySection
from compress.chat.threshold import calibrate_threshold
from compress.errors import DataError

IN = np.linspace(0.50, 1.0, 100)  # in-scope validation confidences
OOS = np.linspace(0.05, 0.60, 40)  # out-of-scope ones: mostly lower


def test_oos_recall_hands_off_the_target_share_of_oos_and_sits_between_rows() -> None:
    thr, rec = calibrate_threshold(IN, OOS, ReplySection(target_oos_recall=0.8))
    assert rec["rule"] == "oos_recall" and rec["bound"] == "target_oos_recall" and rec["split"] == "validation", rec
    assert np.mean(OOS < thr) == 0.8 and rec["validation"]["oos_recall"] == 0.8, (thr, rec)
    assert OOS[31] < thr < OOS[32], "the threshold is not midway between the 32nd and 33rd OOS confidences"
    cov_thr, cov = calibrate_threshold(IN, OOS, ReplySection(threshold_rule="coverage"))
    assert cov["rule"] == "coverage" and thr < cov_thr, (thr, cov_thr)  # lower: fewer in-scope handoffs
    assert rec["validation"]["in_scope_coverage"] > cov["validation"]["in_scope_coverage"] >= 0.95, (rec, cov)


def test_coverage_bounds_oos_recall_when_oos_looks_in_scope() -> None:
    confident_oos = np.linspace(0.7, 0.99, 40)  # would need a threshold handing off most in-scope messages
    thr, rec = calibrate_threshold(IN, confident_oos, ReplySection(target_oos_recall=0.9, target_coverage=0.9))
    assert rec["bound"] == "target_coverage" and rec["validation"]["in_scope_coverage"] >= 0.9, rec
    assert thr == pytest.approx(np.quantile(IN, 0.1)), thr


def test_auto_falls_back_to_coverage_without_oos_rows_and_oos_recall_refuses() -> None:
    thr, rec = calibrate_threshold(IN, np.zeros(0), ReplySection())
    assert rec["rule"] == "coverage" and "no out-of-scope" in rec["reason"], rec
    assert thr == pytest.approx(np.quantile(IN, 0.05)), thr
    with pytest.raises(DataError, match="out-of-scope validation"):
        calibrate_threshold(IN, np.zeros(0), ReplySection(threshold_rule="oos_recall"))
