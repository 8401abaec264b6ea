"""Decision flip rates between clean and perturbed rows, and the robustness gate rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Feeds = dict[str, np.ndarray]
Decision = Literal["argmax", "pair_order", "topk", "topk_ids"]
Side = Literal["clean", "perturbed"]


@dataclass
class RobustnessSet:
    """A task's perturbation set: clean rows, their perturbed copies, and how a decision is read.

    ``source[p]`` is the clean row perturbed row ``p`` came from, ``kinds[p]`` its perturbation. ``decision``:
    ``argmax`` (the intent: top class of the output), ``pair_order`` (the pCTR order of the row against a fixed
    random partner row, ``partner[i]``: which of two ads ranks first), ``topk`` (the set of the ``k``
    highest-scored items), ``topk_ids`` (the set of the first ``k`` ids of an output that is already a ranked id
    list). ``scores(output, side)``, when set, turns the model's ``output`` on the clean or perturbed feeds into
    one row per decision (e.g. a query's pair scores gathered into one padded row per query).
    """

    clean: Feeds
    perturbed: Feeds
    source: np.ndarray
    kinds: list[str]
    decision: Decision
    output: str
    k: int = 10
    partner: np.ndarray | None = None
    definition: str = ""
    """What a flip means for this task, in words (recorded in the manifest and the report)."""
    scores: Callable[[np.ndarray, Side], np.ndarray] | None = None
    clean_rows: int | None = None
    """Clean decision units when they differ from the clean feeds' rows (e.g. queries of a pair-scored list)."""

    def decisions(self, output: np.ndarray, side: Side) -> np.ndarray:
        """The model's output on one side as one row per decision unit."""
        return output if self.scores is None else self.scores(output, side)

    def describe(self) -> dict[str, Any]:
        n_clean = self.clean_rows if self.clean_rows is not None else len(next(iter(self.clean.values())))
        return {
            "decision": self.decision if not self.decision.startswith("topk") else f"top-{self.k}",
            "clean_rows": n_clean,
            "perturbed_rows": len(self.kinds),
            "kinds": sorted(set(self.kinds)),
            "definition": self.definition,
        }


def flipped(clean: np.ndarray, perturbed: np.ndarray, rset: RobustnessSet) -> np.ndarray:
    """One bool per perturbed row: did the decision change versus its clean row?"""
    src = rset.source
    if rset.decision == "argmax":
        return np.asarray(np.argmax(clean[src], axis=1) != np.argmax(perturbed, axis=1))
    if rset.decision == "pair_order":
        if rset.partner is None:
            raise ValueError("pair_order needs partner rows")
        c, p = clean.reshape(len(clean)), perturbed.reshape(len(perturbed))
        other = c[rset.partner[src]]
        return np.asarray(np.sign(c[src] - other) != np.sign(p - other))
    if rset.decision == "topk_ids":
        ids_c, ids_p = clean[src][:, : rset.k], perturbed[:, : rset.k]
        return np.asarray([set(a.tolist()) != set(b.tolist()) for a, b in zip(ids_c, ids_p, strict=True)])
    top_c = np.argsort(-clean[src], axis=1, kind="stable")[:, : rset.k]
    top_p = np.argsort(-perturbed, axis=1, kind="stable")[:, : rset.k]
    return np.asarray([set(a.tolist()) != set(b.tolist()) for a, b in zip(top_c, top_p, strict=True)])


def flip_rate(clean: np.ndarray, perturbed: np.ndarray, rset: RobustnessSet) -> dict[str, Any]:
    """Overall and per-kind flip rates (fractions of perturbed rows whose decision changed)."""
    return rates(flipped(clean, perturbed, rset), rset)


def rates(f: np.ndarray, rset: RobustnessSet) -> dict[str, Any]:
    """:func:`flip_rate` of already computed flips (one bool per perturbed row)."""
    kinds = np.asarray(rset.kinds)
    return {
        "flip_rate": round(float(f.mean()), 6),
        "by_kind": {k: round(float(f[kinds == k].mean()), 6) for k in sorted(set(rset.kinds))},
        "rows": len(f),
    }


def excess_p_value(candidate: np.ndarray, fp32: np.ndarray) -> float:
    """One-sided exact McNemar test on paired flips (the same perturbed rows): the chance of at least this many
    rows where only the candidate flips, among the rows where exactly one of the two flips, if either model were
    as likely as the other to be the one that flips. 1.0 when no row differs.

    Why: on a small set one row is more than the margin (25 search queries x 3 kinds: 1 row = 1.33 pp), so three
    near-tie rows tipping the other way refused a weight-only candidate whose scores are within 0.1 % of FP32's.
    """
    from scipy.stats import binomtest

    only_candidate, only_fp32 = discordant(candidate, fp32)
    n = only_candidate + only_fp32
    if n == 0:
        return 1.0
    return float(binomtest(only_candidate, n, 0.5, alternative="greater").pvalue)


def discordant(candidate: np.ndarray, fp32: np.ndarray) -> tuple[int, int]:
    """(rows only the candidate flips, rows only FP32 flips) of two models' flips on the same perturbed rows."""
    return int(np.count_nonzero(candidate & ~fp32)), int(np.count_nonzero(fp32 & ~candidate))


def check(candidate: float, fp32: float, max_increase: float, p_value: float = 0.0, alpha: float = 1.0) -> str:
    """The rule: refused when ``candidate > fp32 + max_increase`` and the excess is not chance (``p_value`` of
    :func:`excess_p_value` below ``alpha``; ``alpha`` 1.0 refuses on any excess over the margin); '' when it holds,
    else the refusal reason."""
    limit = fp32 + max_increase
    if candidate <= limit + 1e-12 or p_value >= alpha:
        return ""
    chance = f"; p = {p_value:.3g} < [gate].flip_significance {alpha:g}" if alpha < 1.0 else ""
    return (
        f"robustness: flip rate {100 * candidate:.2f} % > limit {100 * limit:.2f} % "
        f"(FP32 {100 * fp32:.2f} % + [gate].max_flip_increase {100 * max_increase:.2f} pp{chance})"
    )
