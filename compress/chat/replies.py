"""Offline side of reply retrieval: response templates with canonical slots, the gazetteer, the reply index.

Bitext responses were generated with the pair's entity value written in (``bill #00108``, ``Platinum``,
``$1200``); left as is, a customer asking about another bill would be told about #00108. Each such value
becomes the canonical placeholder of its slot (``{{Invoice Number}}``), which the service fills from the
customer's own message or turns into a prompt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from app.tasks.chat.replies import SLOTS, ReplyIndex
from compress.chat.data import Pair

# Bitext entity_type -> slot kind of app.tasks.chat.replies
ENTITY_SLOTS = {
    "order_id": "order_number",
    "invoice_id": "invoice_number",
    "refund_amount": "refund_amount",
    "person_name": "person_name",
    "account_type": "account_type",
    "delivery_city": "delivery_city",
    "delivery_country": "delivery_country",
}
GAZETTEER_SLOTS = ("account_type", "delivery_city", "delivery_country")  # closed lists learned from the data
_ACCOUNT_WORDS = r"(?=[\"']?\s+(?:account|plan|membership|subscription|tier|profile|user))"


def _value_pattern(kind: str, value: str) -> re.Pattern[str]:
    """Where the pair's entity value appears in its response (type-aware, so 'free' in 'feel free' is kept)."""
    v = re.escape(value.strip())
    if kind == "order_number":  # annotations sometimes drop digits: any long number is the order id
        return re.compile(r"\{\{\d{5,}\}\}|#?\b\d{5,}\b")
    if kind == "invoice_number":
        return re.compile(rf"#?{re.escape(value.strip().lstrip('#'))}\b")
    if kind == "refund_amount":
        # possessive runs: a long number costs one scan, not one per digit (as the service's own pattern)
        return re.compile(
            r"[$€£]\s?\d[\d,]*+(?:\.\d{1,2})?|\b(?<!,)\d[\d,]*+(?:\.\d{1,2})?\s?(?:dollars|euros)\b", re.I
        )
    if kind == "account_type":
        return re.compile(rf"[\"']{v}[\"']|\b{v}\b{_ACCOUNT_WORDS}", re.I)
    return re.compile(rf"\b{v}\b", re.I)


def templatize(pair: Pair) -> str:
    """The pair's response with its literal entity value replaced by the slot's canonical placeholder."""
    text = pair.response.replace("\r\n", "\n")
    kind = ENTITY_SLOTS.get(pair.entity_type)
    if kind is None or not pair.entity_value.strip():
        return text
    return _value_pattern(kind, pair.entity_value).sub(f"{{{{{SLOTS[kind][0]}}}}}", text)


def gazetteer(pairs: Sequence[Pair]) -> dict[str, list[str]]:
    """Closed-list slot values seen in the training pairs (account types, cities, countries)."""
    out: dict[str, set[str]] = {}
    for p in pairs:
        kind = ENTITY_SLOTS.get(p.entity_type)
        if kind in GAZETTEER_SLOTS and p.entity_value.strip():
            out.setdefault(kind, set()).add(p.entity_value.strip())
    return {k: sorted(v) for k, v in sorted(out.items())}


def select_pairs(pairs: Sequence[Pair], intents: Sequence[str], per_intent: int, seed: int) -> list[Pair]:
    """Up to ``per_intent`` pairs of every in-scope intent (seeded choice), grouped by intent."""
    rng = np.random.default_rng(seed)
    out: list[Pair] = []
    for intent in intents:
        mine = [p for p in pairs if p.intent == intent]
        out.extend(mine[i] for i in sorted(rng.permutation(len(mine))[:per_intent]))
    return out


def build_index(pairs: Sequence[Pair], intents: list[str], embed: Callable[[list[str]], np.ndarray]) -> ReplyIndex:
    """Embed the pairs' instructions with the version's own model (same embedding space as its requests)."""
    pos = {name: i for i, name in enumerate(intents)}
    if not pairs:  # no responses file: an empty index, so the service answers intent + confidence + handoff only
        return ReplyIndex(np.zeros((0, 384), np.float32), np.zeros(0, np.int64), intents, [])
    emb = embed([p.instruction for p in pairs])
    return ReplyIndex(
        emb.astype(np.float32),
        np.array([pos[p.intent] for p in pairs], dtype=np.int64),
        intents,
        [templatize(p) for p in pairs],
    )
