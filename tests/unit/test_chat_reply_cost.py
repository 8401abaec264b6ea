"""Reply parsing runs on the event loop on customer text: its cost must grow linearly with the message.

Adversarial messages (long digit runs after "refund", whitespace runs after "order", repeated keywords...) of
growing length: 8x the length must cost about 8x the time (quadratic backtracking gives 64x, cubic 512x). The
bound is a ratio of CPU times (best of several runs), generous for a loaded machine, never an absolute timing.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from app.tasks.chat import replies as chat_replies
from app.tasks.chat.replies import compose_reply, extract_entities

FAMILIES: dict[str, Callable[[int], str]] = {
    "refund digits": lambda n: "refund " + "1" * n,
    "refund digit-commas": lambda n: "refund " + "1," * (n // 2),
    "order spaces": lambda n: "order" + " " * n + "x",
    "order tabs and spaces": lambda n: "order" + " \t" * (n // 2) + "x",
    "order digits": lambda n: "order " + "1" * n + "x",
    "invoice spaces": lambda n: "invoice" + " " * n + "x",
    "tracking spaces": lambda n: "tracking" + " " * n + "x",
    "hash digits": lambda n: "#" + "1" * n,
    "currency signs": lambda n: "$" * n,
    "titles": lambda n: "Mr " * (n // 3),
    "repeated keyword": lambda n: "order " * (n // 6),
    "decimals": lambda n: "1." * (n // 2),
    "long name": lambda n: "Mr A" + "a" * n,
    "greeting": lambda n: "h" + "i" * n + " x",
}
GAZETTEER = {"delivery_city": [f"City{i} Town" for i in range(60)], "account_type": ["Platinum", "Gold", "Free"]}


BUDGET_S = 5.0  # one call over this is a failure, not a wait (catastrophic backtracking takes minutes)


class _OverBudget(Exception):
    pass


@contextmanager
def _budget(seconds: float) -> Iterator[None]:
    """SIGALRM interrupts a runaway match (``re`` checks for signals while it backtracks)."""

    def expire(_signum: int, _frame: object) -> None:
        raise _OverBudget

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _cpu_cost(message: str, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.process_time()
        extract_entities(message, GAZETTEER)
        compose_reply(
            message, "x", 1.0, threshold=0.5, template="{{Order Number}} {{Refund Amount}}", handoff_reply="h"
        )
        best = min(best, time.process_time() - t)
    return best


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_reply_parsing_cost_grows_linearly(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_replies, "SCAN_CHARS", 10**6)  # measure the patterns themselves, not the input cap
    make = FAMILIES[family]
    try:
        with _budget(BUDGET_S):
            small, large = _cpu_cost(make(2_000)), _cpu_cost(make(16_000))
    except _OverBudget:
        pytest.fail(f"{family}: parsing a 2,000 or 16,000 character message took over {BUDGET_S:.0f} s")
    ratio = large / max(small, 1e-5)
    assert large < 0.05 or ratio < 24, (
        f"{family}: 8x the length cost {ratio:.0f}x ({small * 1e3:.2f} -> {large * 1e3:.2f} ms)"
    )


def test_scan_is_bounded_and_keeps_entities() -> None:
    text = "my order number is 12345678 and I want a refund of $1,200.50" + " x" * 50_000
    found = extract_entities(text)
    assert found == {"order_number": "12345678", "refund_amount": "$1,200.50"}, found
    assert len(chat_replies.scan_text(text)) <= chat_replies.SCAN_CHARS
    assert extract_entities("refund  of \n 40   dollars for order\t\tABC-98765") == {
        "order_number": "ABC-98765",
        "refund_amount": "40 dollars",
    }
