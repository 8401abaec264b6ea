"""Reply retrieval and placeholder filling for the chatbot (numpy + ``re`` only, no I/O at import).

Replies are Bitext response templates. Offline, ``compress`` turns each pair's literal entity values into
canonical slots (``{{Order Number}}``...) and stores the templates with their instructions' embeddings in
``replies.npz``. Online, the best-matching instruction *within the predicted intent* (cosine of unit
embeddings) gives the template; slots are filled from entities found in the message by regexes, or left as a
clear prompt (``[your order number]``) plus a question back to the customer. Other placeholders are company
facts (``{{Website Name}}`` -> the configured value) or UI labels (``{{Order History}}`` -> ``Order History``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# slot kind -> (canonical placeholder label, prompt shown when the message does not carry the value)
SLOTS: dict[str, tuple[str, str]] = {
    "order_number": ("Order Number", "your order number"),
    "invoice_number": ("Invoice Number", "your invoice number"),
    "refund_amount": ("Refund Amount", "the amount to refund"),
    "person_name": ("Person Name", "the name on the invoice"),
    "account_type": ("Account Type", "the account type"),
    "delivery_city": ("Delivery City", "your city"),
    "delivery_country": ("Delivery Country", "your country"),
    "tracking_number": ("Tracking Number", "your tracking number"),
    "purchase_date": ("Purchase Date", "the purchase date"),
    "payment_method": ("Payment Method", "the payment method you used"),
}
# normalised placeholder labels seen in Bitext responses -> slot kind
_LABEL_SLOTS = {
    "order number": "order_number", "purchase id": "order_number", "order id": "order_number",
    "purchase number": "order_number", "invoice number": "invoice_number", "bill number": "invoice_number",
    "refund amount": "refund_amount", "person name": "person_name", "name field": "person_name",
    "account type": "account_type", "delivery city": "delivery_city", "delivery country": "delivery_country",
    "tracking number": "tracking_number", "purchase date": "purchase_date", "payment method": "payment_method",
}
DEFAULT_COMPANY = {
    "website name": "our website", "website": "our website", "website url": "our website",
    "company name": "our company", "company website": "our website", "website or app": "our website or app",
    "customer support phone number": "our customer support phone line",
    "customer service phone number": "our customer support phone line",
    "customer support email": "our support email address", "customer support availability": "during business hours",
    "customer support hours": "business hours", "customer service hours": "business hours",
    "live chat": "Live Chat",
}
_PLACEHOLDER = re.compile(r"\{\{([^{}]+)\}\}")
_OUR_OUR = re.compile(r"\b(our|your|the)\s+our\s+", re.I)
_ENTITY_RES: dict[str, list[re.Pattern[str]]] = {  # per slot, patterns tried in order
    "order_number": [re.compile(
        r"\b(?:order|purchase|package|shipment|parcel)s?\b(?:\s+(?:number|no\.?|num|id|#))?\s*(?:is|:|#)?\s*"
        r"#?\s*([A-Za-z]{0,4}-?\d[\d-]{3,})", re.I)],
    "invoice_number": [re.compile(
        r"\b(?:invoice|bill|receipt)s?\b(?:\s+(?:number|no\.?|num|id))?\s*(?:is|:)?\s*(#?[A-Za-z]{0,3}\d[\w-]{2,})",
        re.I), re.compile(r"(#\d{3,})")],
    "refund_amount": [re.compile(
        r"([$€£]\s?\d[\d,]*(?:\.\d{1,2})?|\d[\d,]*(?:\.\d{1,2})?\s?(?:dollars|euros|pounds|usd|eur|gbp)\b)", re.I)],
    "person_name": [re.compile(r"\b((?:Mr|Mrs|Ms|Miss|Dr)\.?\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)")],
    "tracking_number": [re.compile(
        r"\btracking\s+(?:number|no\.?|id|code)?\s*(?:is|:)?\s*#?\s*([A-Za-z0-9]{6,})", re.I)],
}


def normalise_label(label: str) -> str:
    """``'Order Number Anonymized'`` -> ``'order number'`` (lower case, 'anonymized' dropped, spaces collapsed)."""
    return " ".join(label.lower().replace("anonymized", " ").split())


def slot_of(label: str) -> str | None:
    """The slot kind of a placeholder label; bare numbers (anonymised order ids) count as order numbers."""
    norm = normalise_label(label)
    if norm.isdigit():
        return "order_number"
    return _LABEL_SLOTS.get(norm)


def extract_entities(message: str, gazetteer: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """Slot values found in the message: regexes for ids and amounts, known values for closed lists.

    ``gazetteer`` maps a slot kind (e.g. 'account_type', 'delivery_city') to the values seen in training.
    """
    found: dict[str, str] = {}
    for kind, patterns in _ENTITY_RES.items():
        for rx in patterns:
            values = [m.group(1).strip() for m in rx.finditer(message)]
            values = [v for v in values if v.lstrip("#") not in {x.lstrip("#") for x in found.values()}]
            if values:
                found[kind] = values[0]
                break
    for kind, values in (gazetteer or {}).items():
        for v in sorted(values, key=len, reverse=True):
            m = re.search(rf"\b{re.escape(v)}\b", message, re.I)
            if m:
                found.setdefault(kind, m.group(0) if kind != "account_type" else v)
                break
    return found


def fill_placeholders(template: str, message: str, company: Mapping[str, str] | None = None,
                      gazetteer: Mapping[str, Sequence[str]] | None = None) -> tuple[str, tuple[str, ...]]:
    """Fill ``{{...}}`` placeholders; returns the reply and the slot kinds the customer still has to give.

    Slots take the value from the message, else stay as ``[prompt]`` and a closing question asks for them;
    company facts come from ``company`` (then built-in defaults); any other label is a UI name, kept as text.
    """
    entities = extract_entities(message, gazetteer)
    facts = {**DEFAULT_COMPANY, **{normalise_label(k): v for k, v in (company or {}).items()}}
    missing: list[str] = []

    def repl(m: re.Match[str]) -> str:
        label = m.group(1).strip()
        kind = slot_of(label)
        if kind is None:
            return facts.get(normalise_label(label), label)
        if kind in entities:
            return entities[kind]
        if kind not in missing:
            missing.append(kind)
        return f"[{SLOTS[kind][1]}]"

    text = _OUR_OUR.sub(r"\1 ", _PLACEHOLDER.sub(repl, template))  # "your {{Website Name}}" -> not "your our website"
    if missing:
        prompts = [SLOTS[k][1] for k in missing]
        ask = prompts[0] if len(prompts) == 1 else ", ".join(prompts[:-1]) + " and " + prompts[-1]
        text = f"{text.rstrip()}\n\nCould you tell me {ask}?"
    return text, tuple(missing)


@dataclass
class ReplyIndex:
    """Per-intent instruction embeddings (unit norm) and their response templates, rows grouped by intent."""

    embeddings: np.ndarray  # float32 [N, D]
    intent_ids: np.ndarray  # int64 [N], index into ``intents``
    intents: list[str]
    templates: list[str]

    def __post_init__(self) -> None:
        self._rows = {name: np.flatnonzero(self.intent_ids == i) for i, name in enumerate(self.intents)}

    def best(self, embedding: np.ndarray, intent: str) -> str | None:
        """Template of the known request closest (cosine) to ``embedding`` within ``intent``; None if it has none."""
        rows = self._rows.get(intent)
        if rows is None or len(rows) == 0:
            return None
        sims = self.embeddings[rows] @ embedding
        return self.templates[int(rows[int(np.argmax(sims))])]

    def save(self, path: Path) -> None:
        """One ``.npz`` (no pickle): float16 embeddings, intent ids, and the texts as UTF-8 JSON bytes."""
        texts = json.dumps({"intents": self.intents, "templates": self.templates}).encode()
        with open(path, "wb") as f:
            np.savez(f, embeddings=self.embeddings.astype(np.float16), intent_ids=self.intent_ids.astype(np.int16),
                     texts=np.frombuffer(texts, dtype=np.uint8))

    @classmethod
    def load(cls, path: Path) -> ReplyIndex:
        with np.load(path, allow_pickle=False) as z:
            texts = json.loads(z["texts"].tobytes().decode())
            emb = z["embeddings"].astype(np.float32)
            ids = z["intent_ids"].astype(np.int64)
        return cls(emb, ids, texts["intents"], texts["templates"])
