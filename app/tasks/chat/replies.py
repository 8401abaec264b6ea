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
    "order number": "order_number",
    "purchase id": "order_number",
    "order id": "order_number",
    "purchase number": "order_number",
    "invoice number": "invoice_number",
    "bill number": "invoice_number",
    "refund amount": "refund_amount",
    "person name": "person_name",
    "name field": "person_name",
    "account type": "account_type",
    "delivery city": "delivery_city",
    "delivery country": "delivery_country",
    "tracking number": "tracking_number",
    "purchase date": "purchase_date",
    "payment method": "payment_method",
}
DEFAULT_COMPANY = {
    "website name": "our website",
    "website": "our website",
    "website url": "our website",
    "company name": "our company",
    "company website": "our website",
    "website or app": "our website or app",
    "customer support phone number": "our customer support phone line",
    "customer service phone number": "our customer support phone line",
    "customer support email": "our support email address",
    "customer support availability": "during business hours",
    "customer support hours": "business hours",
    "customer service hours": "business hours",
    "live chat": "Live Chat",
}
_PLACEHOLDER = re.compile(r"\{\{([^{}]+)\}\}")
_OUR_OUR = re.compile(r"\b(our|your|the)\s+our\s+", re.I)
# Entity patterns run on customer text, so each must cost time linear in the message: extraction first bounds the
# text (``SCAN_CHARS``) and collapses whitespace to single spaces, so the optional-space runs below (``\s*``) can
# only ever take one character and backtracking among them is constant; runs are possessive (``*+``), and a
# pattern not anchored on a keyword (the refund amount) may start only where a number starts (a look-behind), so a
# long digit run is scanned once, not once per digit.
SCAN_CHARS = 2000
_ENTITY_RES: dict[str, list[re.Pattern[str]]] = {  # per slot, patterns tried in order
    "order_number": [
        re.compile(
            r"\b(?:order|purchase|package|shipment|parcel)s?\b(?: (?:number|no\.?|num|id|#))? ?(?:is|:|#)? ?#? ?"
            r"([A-Za-z]{0,4}+-?\d[\d-]{3,}+)",
            re.I,
        )
    ],
    "invoice_number": [
        re.compile(
            r"\b(?:invoice|bill|receipt)s?\b(?: (?:number|no\.?|num|id))? ?(?:is|:)? ?"
            r"(#?[A-Za-z]{0,3}+\d[\w-]{2,}+)",
            re.I,
        ),
        re.compile(r"(#\d{3,}+)"),
    ],
    "refund_amount": [
        re.compile(
            r"([$€£] ?\d[\d,]*+(?:\.\d{1,2})?|(?<![\d,])\d[\d,]*+(?:\.\d{1,2})? ?(?:dollars|euros|pounds|usd|eur|gbp)\b)",
            re.I,
        )
    ],
    "person_name": [re.compile(r"\b((?:Mr|Mrs|Ms|Miss|Dr)\.? [A-Z][a-z]++(?: [A-Z][a-z]++)?)")],
    "tracking_number": [
        re.compile(r"\btracking (?:(?:number|no\.?|id|code) ?)?(?:is|:)? ?#? ?([A-Za-z0-9]{6,}+)", re.I)
    ],
}


def scan_text(message: str) -> str:
    """The text entity patterns read: at most ``SCAN_CHARS`` characters, whitespace runs collapsed to one space."""
    return " ".join(message[:SCAN_CHARS].split())


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
    message = scan_text(message)
    found: dict[str, str] = {}
    for kind, patterns in _ENTITY_RES.items():
        for rx in patterns:
            values = [m.group(1).strip() for m in rx.finditer(message)]
            values = [v for v in values if v.lstrip("#") not in {x.lstrip("#") for x in found.values()}]
            if values:
                found[kind] = values[0]
                break
    for kind, known in (gazetteer or {}).items():
        for v in sorted(known, key=len, reverse=True):
            m = re.search(rf"\b{re.escape(v)}\b", message, re.I)
            if m:
                found.setdefault(kind, m.group(0) if kind != "account_type" else v)
                break
    return found


def fill_placeholders(
    template: str,
    message: str,
    company: Mapping[str, str] | None = None,
    gazetteer: Mapping[str, Sequence[str]] | None = None,
) -> tuple[str, tuple[str, ...]]:
    """Fill ``{{...}}`` placeholders; returns the reply and the slot kinds the customer still has to give.

    Slots take the value from the message, else stay as ``[prompt]`` and a closing question asks for them;
    company facts come from ``company`` (then built-in defaults); any other label is a UI name, kept as text.
    """
    entities = extract_entities(message, gazetteer)
    facts = {**DEFAULT_COMPANY, **{normalise_label(k): v for k, v in (company or {}).items()}}
    missing: list[str] = []
    template = drop_redundant_facts(template, facts)

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


# words that, just before "at {{fact}}", already name that fact ("call our hotline at {{Phone}}")
_FACT_NOUNS = {
    "phone": {"line", "hotline", "helpline", "number", "phone", "call", "calling"},
    "email": {"email", "e-mail", "address", "inbox"},
    "website": {"website", "site", "page"},
}
_VERBS = {"call", "calling", "email", "phone"}
_STOP = {"our", "the", "your", "a", "an", "of", "to", "and", "or", "during", "on", "at", "by", "via", "us"}
_FACT_AFTER_PREP = re.compile(r"(\s+(?:at|on|via))?\s+\{\{([^{}]+)\}\}")


def _fact_kind(label: str) -> str | None:
    for kind in ("phone", "email"):
        if kind in label:
            return kind
    return "website" if "website" in label or "url" in label else None


def drop_redundant_facts(template: str, facts: Mapping[str, str]) -> str:
    """Drop ``at {{fact}}`` (or an apposition ``number {{fact}}``) when the words before it already say what the
    fact's text would say.

    A descriptive company fact ("our customer support line", no digits, no address) after "calling our
    customer support hotline at" only repeats the phrase ("... hotline at our customer support line"); a real
    phone number or address (digits, '@', '.') is always kept, since it adds information.
    """

    def repl(m: re.Match[str]) -> str:
        label = normalise_label(m.group(2))
        value, kind = facts.get(label), _fact_kind(label)
        if value is None or kind is None or re.search(r"[\d@.]", value):
            return m.group(0)
        # "hotline at {{Phone}}": the last 4 words; "our phone number {{Phone}}" (apposition): the last word
        before = set(re.findall(r"[a-z-]+", m.string[: m.start()].lower())[-4 if m.group(1) else -1 :])
        said = (_FACT_NOUNS[kind] | set(re.findall(r"[a-z-]+", value.lower()))) - _STOP
        if not m.group(1):  # an apposition repeats a noun ("number {{Phone}}"); "call {{Phone}}" needs the fact
            said -= _VERBS
        return "" if before & said else m.group(0)

    return _FACT_AFTER_PREP.sub(repl, template)


# ---- small talk: a message that is only a greeting, thanks or goodbye gets a proper answer, not a handoff ----
_SMALL_TALK: dict[str, tuple[re.Pattern[str], str]] = {
    "greeting": (
        re.compile(
            r"(?:hi+|hello+|hey+|hiya|howdy|greetings|good (?:morning|afternoon|evening|day))"
            r"(?: there| team| all| everyone)?"
        ),
        "Hello! How can I help you today?",
    ),
    "thanks": (
        re.compile(
            r"(?:(?:ok(?:ay)? |great |perfect )?(?:thanks?|thank you|thx|ty|cheers)"
            r"(?: (?:so|very) much| a lot| again)?|much appreciated)"
        ),
        "You're welcome! Is there anything else I can help you with?",
    ),
    "goodbye": (
        re.compile(r"(?:bye|goodbye|bye bye|see you|see ya|have a (?:nice|good|great) day)"),
        "Goodbye, and thank you for contacting us!",
    ),
}


def small_talk(message: str) -> tuple[str, str] | None:
    """``(kind, reply)`` when the whole message is a greeting, thanks or goodbye (punctuation and emoji ignored)."""
    text = " ".join(re.sub(r"[^\w\s']", " ", message.lower()).split())
    for kind, (rx, reply) in _SMALL_TALK.items():
        if rx.fullmatch(text):
            return kind, reply
    return None


@dataclass(frozen=True)
class Answer:
    """What the service says to one message: ``kind`` is small_talk, handoff, retrieved or intent_only."""

    reply: str | None
    handoff: bool
    kind: str
    missing: tuple[str, ...] = ()


def compose_reply(
    message: str,
    intent: str,
    confidence: float,
    *,
    threshold: float,
    template: str | None,
    handoff_reply: str,
    handoff_intents: Sequence[str] = (),
    has_replies: bool = True,
    company: Mapping[str, str] | None = None,
    gazetteer: Mapping[str, Sequence[str]] | None = None,
) -> Answer:
    """The reply rules, in order (one place, so serving and tests agree):

    1. a message that is only small talk (hello, thanks, bye) gets its answer, never a handoff;
    2. confidence below the version's threshold -> the handoff message, handed off;
    3. a handoff intent (e.g. contact_human_agent) -> the handoff message, handed off (never a self-service
       text next to ``handoff: true``);
    4. a version without a responses file -> no reply text: intent + confidence + handoff only;
    5. an intent without templates -> the handoff message, handed off;
    6. else the retrieved template, slot-filled (``missing`` = slots the customer still has to give).

    ``template`` is ``ReplyIndex.best(embedding, intent)`` (None when the index has nothing for the intent).
    """
    talk = small_talk(message)
    if talk is not None:
        return Answer(talk[1], False, "small_talk")
    if confidence < threshold or intent in handoff_intents:
        return Answer(handoff_reply, True, "handoff")
    if not has_replies:
        return Answer(None, False, "intent_only")
    if template is None:
        return Answer(handoff_reply, True, "handoff")
    text, missing = fill_placeholders(template, message, company, gazetteer)
    return Answer(text, False, "retrieved", missing)


@dataclass
class ReplyIndex:
    """Per-intent instruction embeddings (unit norm) and their response templates, rows grouped by intent."""

    embeddings: np.ndarray  # float32 [N, D]
    intent_ids: np.ndarray  # int64 [N], index into ``intents``
    intents: list[str]
    templates: list[str]

    def __post_init__(self) -> None:
        self._rows = {name: np.flatnonzero(self.intent_ids == i) for i, name in enumerate(self.intents)}

    @property
    def has_replies(self) -> bool:
        """False for a version trained without a responses file (the service then gives no canned reply)."""
        return len(self.templates) > 0

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
            np.savez(
                f,
                embeddings=self.embeddings.astype(np.float16),
                intent_ids=self.intent_ids.astype(np.int16),
                texts=np.frombuffer(texts, dtype=np.uint8),
            )

    @classmethod
    def load(cls, path: Path) -> ReplyIndex:
        with np.load(path, allow_pickle=False) as z:
            texts = json.loads(z["texts"].tobytes().decode())
            emb = z["embeddings"].astype(np.float32)
            ids = z["intent_ids"].astype(np.int64)
        return cls(emb, ids, texts["intents"], texts["templates"])
