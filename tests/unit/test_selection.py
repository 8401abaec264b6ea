"""Deterministic selection: latencies within measurement noise are ties, broken by size then simpler recipe;
every rejection has a reason; the size and latency budgets are explicit config."""

from __future__ import annotations

import itertools

import pytest

from compress.candidates import Candidate
from compress.config import SelectSection
from compress.gate import GateResult
from compress.selection import TIE_BREAK, select


def cand(name: str, size: int, ms: float, spread: float = 0.01, status: str = "passed") -> Candidate:
    """A measured candidate: median ``ms`` at batch 64, per-round medians within ``ms +- spread``."""
    gate = GateResult(status == "passed", "auc >= 0.999 x FP32", {}, [] if status == "passed" else ["auc 0.70 < 0.75"])
    return Candidate(
        name,
        status=status,
        bytes=size,
        latency={"64": ms},
        latency_range={"64": (ms - spread, ms + spread)},
        gate=None if status == "reference" else gate,
    )


FP32 = cand("fp32", 1_000_000, 0.50, status="reference")


def test_latencies_within_noise_tie_and_the_smaller_simpler_candidate_wins_in_any_order() -> None:
    cands = [
        cand("a+int8_dynamic_u8", 240_000, 0.247),
        cand("int8_dynamic_s8", 250_000, 0.250),
        cand("b+c+int8_dynamic_s8", 240_000, 0.249),
    ]
    picks = set()
    for order in itertools.permutations(cands):
        s = select([FP32, *order], SelectSection(batch_size=64, min_compression=3.5))
        picks.add(s.chosen.name if s.chosen else None)
        assert s.rule["tie_break"] == TIE_BREAK and s.rule["objective"] == "latency"
    assert picks == {"a+int8_dynamic_u8"}  # 240 kB like b+c+..., but two steps instead of three
    s = select([FP32, *cands], SelectSection(batch_size=64, min_compression=3.5))
    assert s.tied == ["b+c+int8_dynamic_s8", "int8_dynamic_s8"]
    assert "tied with a+int8_dynamic_u8 within measurement noise" in s.rejected["int8_dynamic_s8"]


def test_a_clearly_faster_candidate_wins_and_the_slower_one_is_told_why() -> None:
    fast, slow = cand("fast", 250_000, 0.20), cand("small", 200_000, 0.30)
    s = select([FP32, slow, fast], SelectSection(batch_size=64))
    assert s.chosen is fast and s.tied == []
    assert s.rejected["small"].startswith("slower at batch 64: 0.300 ms")


def test_every_rejection_names_its_reason() -> None:
    cands = [
        FP32,
        cand("failed", 100_000, 0.1, status="failed"),
        Candidate("broken", status="error", error="boom"),
        cand("big", 600_000, 0.1),
        cand("ok", 200_000, 0.2),
    ]
    s = select(cands, SelectSection(batch_size=64, min_compression=2.0))
    assert s.chosen is not None and s.chosen.name == "ok"
    assert s.rejected == {
        "failed": "gate: auc 0.70 < 0.75",
        "broken": "build error: boom",
        "big": "size budget: 1.67x smaller than FP32 < [select].min_compression 2x",
    }
    assert set(s.as_dict()) == {"rule", "selected", "tied", "rejected"}
    assert select(cands[:3], SelectSection(batch_size=64)).chosen is None


def test_size_objective_and_the_latency_budget_trade_size_against_speed() -> None:
    u8, s8 = cand("student_u8", 180_000, 0.60), cand("student_s8", 200_000, 0.20)
    assert select([FP32, u8, s8], SelectSection(batch_size=64, objective="latency")).chosen is s8
    assert select([FP32, u8, s8], SelectSection(batch_size=64, objective="size")).chosen is u8
    budget = select([FP32, u8, s8], SelectSection(batch_size=64, objective="size", max_latency_ratio=2.0))
    assert budget.chosen is s8
    assert budget.rejected["student_u8"].startswith("latency budget: 0.600 ms")


def test_an_absolute_latency_budget_rejects_slow_candidates_before_the_objective() -> None:
    small_slow, big_fast = cand("small_slow", 100_000, 0.60), cand("big_fast", 300_000, 0.20)
    s = select([FP32, small_slow, big_fast], SelectSection(batch_size=64, objective="size", max_latency_ms=0.5))
    assert s.chosen is big_fast and s.rule["max_latency_ms"] == 0.5
    assert s.rejected["small_slow"] == "latency budget: 0.600 ms (rounds 0.590-0.610) > [select].max_latency_ms 0.5 ms"
    assert select([FP32, small_slow], SelectSection(batch_size=64, max_latency_ms=0.5)).chosen is None
    with pytest.raises(ValueError, match="max_latency_ms"):
        SelectSection(max_latency_ms=0)


def test_throughput_is_the_old_name_of_latency_and_bad_values_are_rejected() -> None:
    assert select([FP32, cand("x", 1, 0.1)], SelectSection(objective="throughput")).rule["objective"] == "latency"
    with pytest.raises(ValueError, match="max_latency_ratio"):
        SelectSection(max_latency_ratio=0.5)
