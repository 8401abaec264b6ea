"""The accuracy gate: a candidate is publishable only if every rule holds versus FP32 on the same rows."""

from __future__ import annotations

from dataclasses import dataclass, field

from compress.config import GateRule


@dataclass(frozen=True)
class GateResult:
    passed: bool
    rule: str
    numbers: dict[str, float]
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def describe(rules: list[GateRule]) -> str:
    text = {
        "min_ratio": "{m} >= {v:g} x FP32",
        "max_rel_increase": "{m} <= FP32 x (1 + {v:g})",
        "max_abs_drop": "{m} >= FP32 - {v:g}",
    }
    return " and ".join(text[r.kind].format(m=r.metric, v=r.value) for r in rules)


def _bound(rule: GateRule, ref: float) -> tuple[float, bool]:
    """The limit the candidate must respect, and whether it is a lower bound."""
    if rule.kind == "min_ratio":
        return ref * rule.value, True
    if rule.kind == "max_abs_drop":
        return ref - rule.value, True
    return ref * (1.0 + rule.value), False


def check(candidate: dict[str, float], fp32: dict[str, float], rules: list[GateRule]) -> GateResult:
    """Evaluate every rule; ``numbers`` holds each metric, its FP32 value and its limit for the manifest."""
    numbers: dict[str, float] = {}
    reasons: list[str] = []
    for r in rules:
        if r.metric not in candidate or r.metric not in fp32:
            reasons.append(f"metric {r.metric!r} was not measured")
            continue
        limit, lower = _bound(r, fp32[r.metric])
        got = candidate[r.metric]
        numbers[r.metric] = got
        numbers[f"{r.metric}_fp32"] = fp32[r.metric]
        numbers[f"{r.metric}_limit"] = limit
        if (got < limit) if lower else (got > limit):
            cmp = "<" if lower else ">"
            reasons.append(f"{r.metric} {got:.5f} {cmp} limit {limit:.5f} (FP32 {fp32[r.metric]:.5f})")
    return GateResult(not reasons, describe(rules), numbers, reasons)


def margin(candidate: dict[str, float], fp32: dict[str, float], rules: list[GateRule]) -> float:
    """Smallest slack over the rules, relative to FP32 (negative = failing); orders candidates in the fallback."""
    slacks = []
    for r in rules:
        limit, lower = _bound(r, fp32[r.metric])
        got = candidate[r.metric]
        slacks.append(((got - limit) if lower else (limit - got)) / max(abs(fp32[r.metric]), 1e-12))
    return min(slacks)
