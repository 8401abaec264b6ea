"""The overload benchmark's CPU bound on goodput (``loadtest.overload.feasibility``), from run records."""

from __future__ import annotations

import pytest

from loadtest.overload import feasibility


def _run(ok: int, refused: int, cpu_s: float) -> dict[str, object]:
    return {"status": {"200": {"n": ok}, "503": {"n": refused}}, "server_cpu_s": cpu_s}


def test_bound_from_serve_and_refuse_costs() -> None:
    # at capacity 1,000 answers cost 1.0 s (1 ms each); overloaded: 800 answers + 2,000 refusals cost 1.0 s,
    # so a refusal cost (1.0 - 0.8) / 2000 = 100 µs, rho = 0.1, and at 3x goodput <= (1 - 0.3) / 0.9
    out = feasibility(_run(1000, 0, 1.0), _run(800, 2000, 1.0), offered_x=3.0)
    assert out["serve_cpu_us"] == 1000.0
    assert out["refuse_cpu_us"] == pytest.approx(100.0)
    assert out["goodput_bound_of_capacity"] == pytest.approx(0.778, abs=1e-3)


def test_refusals_dearer_than_a_third_of_service_leave_nothing_at_3x() -> None:
    out = feasibility(_run(1000, 0, 1.0), _run(100, 2000, 1.0), offered_x=3.0)  # refusal 450 µs, rho 0.45
    assert out["goodput_bound_of_capacity"] == 0.0


def test_no_bound_without_cpu_figures_or_refusals() -> None:
    assert feasibility({"status": {"200": {"n": 10}}, "server_cpu_s": None}, _run(5, 5, 1.0), 3.0) == {}
    assert feasibility(_run(10, 0, 1.0), _run(10, 0, 1.0), 3.0) == {}
