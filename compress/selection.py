"""Which gate-passing candidate to publish: a stable rule that names the reason for every rejection.

Latency medians on a shared CPU move by a few percent between identical runs, so "the fastest" alone would let
0.247 vs 0.250 ms decide the published model. Each candidate's latency carries the range of its per-round
medians (the interleaved rounds of ``compress.evaluate.latency_stats``); candidates whose ranges overlap the
fastest one's are **ties**, and ties are broken by a fixed order: smaller file, then fewer recipe steps, then
name. The rule and every rejection reason are recorded in the manifest (``recipe["selection"]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from compress.candidates import Candidate
from compress.config import SelectSection

TIE_BREAK = ["smaller file (bytes)", "fewer recipe steps", "candidate name"]
NOISE_RULE = (
    "latency medians whose per-round-median ranges overlap the fastest candidate's range are ties "
    "(within measurement noise)"
)


@dataclass
class Selection:
    """The chosen candidate (or None), the rule as recorded, the ties, and why every other one lost."""

    chosen: Candidate | None
    rule: dict[str, Any]
    tied: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "selected": self.chosen.name if self.chosen else None,
            "tied": self.tied,
            "rejected": self.rejected,
        }


def _steps(c: Candidate) -> int:
    return len(c.name.split("+"))


def _lat(c: Candidate, b: str) -> tuple[float, float, float]:
    """(median, low, high) at batch ``b``; a candidate without a range has a zero-width one."""
    med = c.latency.get(b, float("inf"))
    lo, hi = c.latency_range.get(b, (med, med))
    return med, lo, hi


def _fmt(c: Candidate, b: str) -> str:
    med, lo, hi = _lat(c, b)
    return f"{med:.3f} ms (rounds {lo:.3f}-{hi:.3f})"


def select(cands: Sequence[Candidate], cfg: SelectSection) -> Selection:
    """Apply the gate, the size budget and the latency budget, then the objective with noise-aware ties."""
    b = str(cfg.batch_size)
    objective = "latency" if cfg.objective == "throughput" else cfg.objective
    rule: dict[str, Any] = {
        "objective": objective,
        "batch_size": cfg.batch_size,
        "min_compression": cfg.min_compression,
        "max_latency_ratio": cfg.max_latency_ratio,
        "max_latency_ms": cfg.max_latency_ms,
        "noise": NOISE_RULE,
        "tie_break": TIE_BREAK,
    }
    ref = next(c for c in cands if c.status == "reference")
    rejected: dict[str, str] = {}
    ok: list[Candidate] = []
    for c in cands:
        if c is ref:
            continue
        if c.status == "error":
            rejected[c.name] = f"build error: {c.error}"
        elif c.status != "passed":
            rejected[c.name] = f"gate: {c.gate.reason if c.gate else 'not gated'}"
        elif c.bytes * cfg.min_compression > ref.bytes:
            rejected[c.name] = (
                f"size budget: {ref.bytes / c.bytes:.2f}x smaller than FP32 < "
                f"[select].min_compression {cfg.min_compression:g}x"
            )
        elif cfg.max_latency_ms is not None and _lat(c, b)[0] > cfg.max_latency_ms:
            rejected[c.name] = f"latency budget: {_fmt(c, b)} > [select].max_latency_ms {cfg.max_latency_ms:g} ms"
        else:
            ok.append(c)
    if ok and cfg.max_latency_ratio is not None:
        fastest = min(ok, key=lambda c: (_lat(c, b)[0], c.bytes, _steps(c), c.name))
        limit = _lat(fastest, b)[0] * cfg.max_latency_ratio
        for c in list(ok):
            if _lat(c, b)[0] > limit:
                rejected[c.name] = (
                    f"latency budget: {_fmt(c, b)} > [select].max_latency_ratio "
                    f"{cfg.max_latency_ratio:g} x fastest {fastest.name} {_lat(fastest, b)[0]:.3f} ms"
                )
                ok.remove(c)
    if not ok:
        return Selection(None, rule, [], rejected)
    if objective == "size":
        order = sorted(ok, key=lambda c: (c.bytes, _lat(c, b)[0], _steps(c), c.name))
        chosen = order[0]
        tied = [c.name for c in order[1:] if c.bytes == chosen.bytes]
        for c in order[1:]:
            rejected[c.name] = f"larger: {c.bytes:,} bytes > {chosen.name} {chosen.bytes:,} bytes"
        return Selection(chosen, rule, tied, rejected)
    fastest = min(ok, key=lambda c: (_lat(c, b)[0], c.bytes, _steps(c), c.name))
    _, f_lo, f_hi = _lat(fastest, b)
    ties = [c for c in ok if _lat(c, b)[1] <= f_hi and f_lo <= _lat(c, b)[2]]
    chosen = min(ties, key=lambda c: (c.bytes, _steps(c), c.name))
    for c in ok:
        if c is chosen:
            continue
        if c in ties:
            rejected[c.name] = (
                f"tied with {chosen.name} within measurement noise ({_fmt(c, b)} vs "
                f"{_fmt(chosen, b)}); tie broken by {', then '.join(TIE_BREAK)}"
            )
        else:
            rejected[c.name] = f"slower at batch {b}: {_fmt(c, b)} vs fastest {fastest.name} {_fmt(fastest, b)}"
    return Selection(chosen, rule, sorted(c.name for c in ties if c is not chosen), rejected)
