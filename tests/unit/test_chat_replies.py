"""Reply composition: no repeated phrases from company facts, handoff answers carry the handoff message,
greetings and thanks get a proper answer, and a version without responses answers intent + confidence only."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest

from app.tasks.chat.replies import compose_reply, drop_redundant_facts, fill_placeholders, small_talk

COMPANY = {
    "Website Name": "our website",
    "Customer Support Phone Number": "our customer support line",
    "Customer Support Availability": "during business hours",
    "Live Chat": "Live Chat",
}  # chatbot.toml's
HANDOFF = "I'll hand you to a human agent."
PAIRS = (
    Path(os.environ.get("DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
    / "chatbot"
    / "bitext"
    / "bitext_customer_support_llm_training_v1.csv"
)


def test_a_descriptive_fact_is_not_repeated_after_a_phrase_that_already_says_it() -> None:
    tpl = "You can reach them by calling our customer support line at {{Customer Support Phone Number}}."
    assert fill_placeholders(tpl, "hi", COMPANY)[0] == "You can reach them by calling our customer support line."
    tpl = "Call our customer support phone number {{Customer Support Phone Number}} or use {{Live Chat}}."
    assert fill_placeholders(tpl, "hi", COMPANY)[0] == "Call our customer support phone number or use Live Chat."
    kept = "You can reach them at {{Customer Support Phone Number}}."
    assert fill_placeholders(kept, "hi", COMPANY)[0] == "You can reach them at our customer support line."
    real = {**COMPANY, "Customer Support Phone Number": "+1 555 0100"}  # a real number adds information: kept
    tpl = "Call our hotline at {{Customer Support Phone Number}}."
    assert fill_placeholders(tpl, "hi", real)[0] == "Call our hotline at +1 555 0100."
    assert (
        drop_redundant_facts("see {{Order History}} at {{Website Name}}", {})
        == "see {{Order History}} at {{Website Name}}"
    )


@pytest.mark.skipif(not PAIRS.is_file(), reason=f"Bitext pairs not found at {PAIRS} (set DATA_DIR)")
def test_no_bitext_reply_says_the_support_line_twice() -> None:
    with open(PAIRS, newline="", encoding="utf-8") as f:
        responses = [r["response"] for r in csv.DictReader(f)]
    twice = re.compile(r"\b(?:line|hotline|helpline|number|phone)\s+(?:at\s+)?our customer support line", re.IGNORECASE)
    filled = [fill_placeholders(r, "hi", COMPANY)[0] for r in responses]
    bad = [t for t in filled if twice.search(t)]
    assert not bad, bad[:3]
    assert sum("our customer support line" in t for t in filled) > 1000  # the fact is still filled in elsewhere


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("hello", "greeting"),
        ("Hi there!", "greeting"),
        ("good morning :)", "greeting"),
        ("thanks a lot", "thanks"),
        ("Thank you so much!", "thanks"),
        ("bye", "goodbye"),
        ("have a nice day", "goodbye"),
    ],
)
def test_small_talk_is_answered_not_handed_off(message: str, kind: str) -> None:
    assert small_talk(message) is not None and small_talk(message)[0] == kind  # type: ignore[index]
    a = compose_reply(
        message,
        "contact_human_agent",
        0.50,
        threshold=0.8,
        template=None,
        handoff_reply=HANDOFF,
        handoff_intents=["contact_human_agent"],
    )
    assert not a.handoff and a.kind == "small_talk" and a.reply and a.reply != HANDOFF


def test_a_greeting_with_a_request_is_not_small_talk() -> None:
    assert small_talk("hello, I want to cancel order 123456") is None
    assert small_talk("thanks but my refund never arrived") is None


def test_handoff_answers_carry_the_handoff_message() -> None:
    tpl = "You can check {{Order History}} on {{Website Name}} yourself."
    low = compose_reply("cancel it", "cancel_order", 0.3, threshold=0.5, template=tpl, handoff_reply=HANDOFF)
    agent = compose_reply(
        "I need a person",
        "contact_human_agent",
        0.99,
        threshold=0.5,
        template=tpl,
        handoff_reply=HANDOFF,
        handoff_intents=["contact_human_agent"],
    )
    for a in (low, agent):
        assert a.handoff and a.reply == HANDOFF and a.kind == "handoff"
    none = compose_reply("x", "cancel_order", 0.9, threshold=0.5, template=None, handoff_reply=HANDOFF)
    assert none.handoff and none.reply == HANDOFF


def test_retrieved_reply_is_filled_and_a_version_without_responses_answers_intent_only() -> None:
    tpl = "Order {{Order Number}} is cancelled."
    a = compose_reply(
        "cancel order 732201349959", "cancel_order", 0.9, threshold=0.5, template=tpl, handoff_reply=HANDOFF
    )
    assert (a.reply, a.handoff, a.kind, a.missing) == ("Order 732201349959 is cancelled.", False, "retrieved", ())
    b = compose_reply(
        "cancel my order", "cancel_order", 0.9, threshold=0.5, template=None, handoff_reply=HANDOFF, has_replies=False
    )
    assert (b.reply, b.handoff, b.kind) == (None, False, "intent_only")
