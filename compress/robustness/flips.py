"""Decision flip rates between clean and perturbed rows, and the robustness gate rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Feeds = dict[str, np.ndarray]
Decision = Literal["argmax", "pair_order", "topk"]


@dataclass
class RobustnessSet:
    """A task's perturbation set: clean rows, their perturbed copies, and how a decision is read.

    ``source[p]`` is the clean row perturbed row ``p`` came from, ``kinds[p]`` its perturbation. ``decision``:
    ``argmax`` (the intent: top class of the output), ``pair_order`` (the pCTR order of the row against a fixed
    random partner row, ``partner[i]``: which of two ads ranks first), ``topk`` (the set of the ``k``
    highest-scored items).
    """

    clean: Feeds
    perturbed: Feeds
    source: np.ndarray
    kinds: list[str]
    decision: Decision
    output: str
    k: int = 10
    partner: np.ndarray | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        n_clean = len(next(iter(self.clean.values())))
        return {
            "decision": self.decision if self.decision != "topk" else f"top-{self.k}",
            "clean_rows": n_clean,
            "perturbed_rows": len(self.kinds),
            "kinds": sorted(set(self.kinds)),
            **self.notes,
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
    top_c = np.argsort(-clean[src], axis=1, kind="stable")[:, : rset.k]
    top_p = np.argsort(-perturbed, axis=1, kind="stable")[:, : rset.k]
    return np.asarray([set(a.tolist()) != set(b.tolist()) for a, b in zip(top_c, top_p, strict=True)])


def flip_rate(clean: np.ndarray, perturbed: np.ndarray, rset: RobustnessSet) -> dict[str, Any]:
    """Overall and per-kind flip rates (fractions of perturbed rows whose decision changed)."""
    f = flipped(clean, perturbed, rset)
    kinds = np.asarray(rset.kinds)
    return {
        "flip_rate": round(float(f.mean()), 6),
        "by_kind": {k: round(float(f[kinds == k].mean()), 6) for k in sorted(set(rset.kinds))},
        "rows": len(f),
    }


def check(candidate: float, fp32: float, max_increase: float) -> str:
    """The rule: ``candidate <= fp32 + max_increase``; '' when it holds, else the refusal reason."""
    limit = fp32 + max_increase
    if candidate <= limit + 1e-12:
        return ""
    return (
        f"robustness: flip rate {100 * candidate:.2f} % > limit {100 * limit:.2f} % "
        f"(FP32 {100 * fp32:.2f} % + [robustness].max_flip_increase {100 * max_increase:.2f} pp)"
    )
