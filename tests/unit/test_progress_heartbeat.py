"""Long compress loops report at least every EVERY_S seconds with an ETA measured from their own rate.

A fake clock drives the loop (no sleeping): every emitted line is checked against the clock it was written at.
"""

from __future__ import annotations

import logging

import pytest

from compress.progress import EVERY_S, Heartbeat, Stages


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_long_loop_is_never_silent_for_more_than_every_s_plus_one_step() -> None:
    clock, lines = FakeClock(), []
    step_s, total = 0.7, 3000  # 35 minutes of 0.7 s batches
    beat = Heartbeat("distil student", total, clock=clock, say=lambda fmt, *a: lines.append((clock.now, fmt % a)))
    for _ in beat.each(range(total)):
        clock.now += step_s
    times = [1000.0] + [t for t, _ in lines]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(lines) >= total * step_s / (EVERY_S + step_s) - 1, lines[:3]
    assert max(gaps) <= EVERY_S + step_s, max(gaps)
    assert EVERY_S + step_s <= 30, "the promise is a line at least every 30 s"


def test_the_eta_is_measured_from_the_rate_so_far() -> None:
    clock, lines = FakeClock(), []
    beat = Heartbeat("train", 100, clock=clock, say=lambda fmt, *a: lines.append(fmt % a), every_s=10)
    for i in beat.each(range(100)):
        clock.now += 2.0 if i < 50 else 0.5  # it speeds up halfway: the ETA follows the measured mean
    first, last = lines[0], lines[-1]
    assert first == "train: batch 5/100 (5%), 2.00 s/batch, ETA 3:10", first  # 95 left x 2.0 s
    # 50 x 2 s + 40 x 0.5 s = 120 s for 90 batches: 1.33 s each, 10 left
    assert last == "train: batch 90/100 (90%), 1.33 s/batch, ETA 0:13", last


def test_lines_carry_the_run_prefix_of_the_stages(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    Stages("chat-intent")
    beat = Heartbeat("vectors", None, unit="row", clock=clock)
    with caplog.at_level(logging.INFO, logger="compress.stage"):
        clock.now += EVERY_S
        beat.tick(5000)
    assert "[chat-intent " in caplog.text and "vectors: row 5,000, " in caplog.text, caplog.text
