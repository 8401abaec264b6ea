"""The chatbot's handoff threshold, calibrated on the validation split (never on test or the plain-phrasing set).

A message is handed to an agent when the top intent's softmax confidence is below the threshold. A fixed
in-scope coverage quantile (``coverage``) hands off the least confident 5 % of the validation messages whatever
out-of-scope traffic looks like; on Bitext that sits far above what out-of-scope messages score, so plain
customer phrasing (correct, but less confident than the template text) is handed off too. ``oos_recall`` sets
the threshold from the out-of-scope validation messages instead: the lowest one that still hands off
``target_oos_recall`` of them, bounded by the coverage rule (never handing off more in-scope validation messages
than ``1 - target_coverage``). ``auto`` = ``oos_recall`` where the validation split has out-of-scope rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compress.chat.config import ReplySection
from compress.errors import DataError


def calibrate_threshold(in_conf: np.ndarray, oos_conf: np.ndarray, reply: ReplySection) -> tuple[float, dict[str, Any]]:
    """(threshold, record) from validation confidences: in-scope ``in_conf``, out-of-scope ``oos_conf``.

    The record says which rule and bound set the threshold and what it does on the validation rows, so the
    manifest shows the threshold was chosen there.
    """
    if not len(in_conf):
        raise DataError("the validation split has no in-scope messages: the handoff threshold cannot be calibrated")
    coverage_thr = float(np.quantile(in_conf, 1.0 - reply.target_coverage))
    rule = reply.threshold_rule
    if rule == "oos_recall" and not len(oos_conf):
        raise DataError(
            "[reply].threshold_rule = 'oos_recall' needs out-of-scope validation messages and the data has none "
            "(set threshold_rule = 'auto' or 'coverage')"
        )
    record: dict[str, Any] = {"rule": rule, "split": "validation", "target_coverage": reply.target_coverage}
    if rule == "coverage" or not len(oos_conf):
        thr, record["rule"], record["bound"] = coverage_thr, "coverage", "target_coverage"
        if rule == "auto":
            record["reason"] = "no out-of-scope validation messages"
    else:
        oos_thr = _recall_threshold(oos_conf, reply.target_oos_recall)
        thr = min(oos_thr, coverage_thr)
        record.update(
            rule="oos_recall",
            target_oos_recall=reply.target_oos_recall,
            bound="target_oos_recall" if oos_thr <= coverage_thr else "target_coverage",
        )
    record["threshold"] = round(thr, 6)
    record["validation"] = {
        "in_scope_rows": len(in_conf),
        "in_scope_coverage": round(float(np.mean(in_conf >= thr)), 5),
        "oos_rows": len(oos_conf),
        **({"oos_recall": round(float(np.mean(oos_conf < thr)), 5)} if len(oos_conf) else {}),
    }
    return thr, record


def _recall_threshold(oos_conf: np.ndarray, recall: float) -> float:
    """A threshold handing off at least ``recall`` of ``oos_conf`` (handoff: confidence < threshold): midway
    between the last confidence that must be handed off and the next one, so it sits on no validation row."""
    s = np.sort(oos_conf)
    k = int(np.ceil(recall * len(s) - 1e-9))  # messages that must sit below the threshold
    if k <= 0:
        return 0.0
    if k >= len(s):
        return float(np.nextafter(s[-1], np.inf))
    return float((s[k - 1] + s[k]) / 2) if s[k] > s[k - 1] else float(np.nextafter(s[k - 1], np.inf))
