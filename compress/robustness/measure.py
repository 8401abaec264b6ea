"""Every candidate's decision flip rate on its task's perturbation set, and the rule that refuses a candidate.

Generic: the task builds the set (its ``robustness_set`` hook, :func:`compress.tasks.task_robustness_set`); this
module runs each built model on the clean rows and their perturbed copies, counts decision flips (each model
against its own clean decisions) and compares a candidate's rate with FP32's. A candidate over the limit is
refused like one that fails an accuracy rule: its gate fails with the reason, so the selection skips it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compress.candidates import Candidate
from compress.config import CompressConfig
from compress.gate import GateResult
from compress.robustness.flips import RobustnessSet, check, discordant, excess_p_value, flipped, rates
from compress.tasks import TaskAdapter, task_predict, task_robustness_set

RULE = (
    "flip rate <= FP32 flip rate + [gate].max_flip_increase, unless the excess is chance "
    "(one-sided exact McNemar p >= [gate].flip_significance)"
)


def measure(rset: RobustnessSet, task: TaskAdapter, path: Path) -> tuple[dict[str, Any], Any]:
    """Flip rate (overall and per perturbation kind) of the model at ``path``, and which perturbed rows flipped."""
    from compress.evaluate import session

    sess = session(path, threads=2)
    clean = rset.decisions(task_predict(task, sess, rset.clean, rset.output), "clean")
    perturbed = rset.decisions(task_predict(task, sess, rset.perturbed, rset.output), "perturbed")
    f = flipped(clean, perturbed, rset)
    return rates(f, rset), f


def rule(cfg: CompressConfig, rset: RobustnessSet | None, reason: str) -> dict[str, Any]:
    """The run report's ``robustness`` entry: the rule, the margin, and the set (or why there is none)."""
    out: dict[str, Any] = {
        "rule": RULE,
        "max_flip_increase": cfg.gate.max_flip_increase,
        "flip_significance": cfg.gate.flip_significance,
        "seed": cfg.robustness.seed,
    }
    return {**out, "set": rset.describe()} if rset is not None else {**out, "skipped": reason}


def apply(cands: Sequence[Candidate], task: TaskAdapter, cfg: CompressConfig) -> dict[str, Any]:
    """Measure FP32 (``cands[0]``) and every candidate that passed the accuracy rules; refuse those over the limit.

    Sets each built candidate's ``robustness`` block and returns the report's ``robustness`` entry. Candidates
    that already failed are not measured (they cannot be published either way); a candidate whose graph has
    other inputs or outputs than the task's (an ANN user tower) has no comparable decision and is skipped.
    """
    rset, reason = task_robustness_set(task, cfg)
    built = [c for c in cands if c.path is not None]
    if rset is None:
        for c in built:
            c.robustness = {"status": "skipped", "reason": reason}
        return rule(cfg, None, reason)
    ref = cands[0]
    assert ref.path is not None
    base, base_flips = measure(rset, task, ref.path)
    fp32, inc, alpha = base["flip_rate"], cfg.gate.max_flip_increase, cfg.gate.flip_significance
    common = {
        "fp32_flip_rate": fp32,
        "max_increase": inc,
        "limit": round(fp32 + inc, 6),
        "significance": alpha,
        **rset.describe(),
    }
    ref.robustness = {"status": "reference", "flip_rate": fp32, "margin": inc, "by_kind": base["by_kind"], **common}
    for c in (c for c in built if c is not ref):
        if c.io is not None:
            c.robustness = {"status": "skipped", "reason": "its graph has other inputs/outputs than the task's model"}
        elif c.status != "passed":
            c.robustness = {"status": "not_measured", "reason": "failed the accuracy gate"}
        else:
            m, flips = measure(rset, task, c.path)  # type: ignore[arg-type]
            p_value = excess_p_value(flips, base_flips)
            only_candidate, only_fp32 = discordant(flips, base_flips)
            refusal = check(m["flip_rate"], fp32, inc, p_value, alpha)
            c.robustness = {
                "status": "failed" if refusal else "passed",
                "flip_rate": m["flip_rate"],
                "margin": round(fp32 + inc - m["flip_rate"], 6),
                "by_kind": m["by_kind"],
                "only_candidate_flips": only_candidate,
                "only_fp32_flips": only_fp32,
                "p_value": round(p_value, 6),
                **common,
            }
            if refusal:
                g = c.gate
                c.gate = (
                    GateResult(False, g.rule, g.numbers, [*g.reasons, refusal])
                    if g
                    else GateResult(False, RULE, {}, [refusal])
                )
                c.status = "failed"
    return rule(cfg, rset, "")
