"""Bitext customer-support data: utterances with intents, instruction->response pairs, and the stated split.

Both files are pooled and de-duplicated (case- and whitespace-insensitive); no text has two intents. A few
whole intents (``[data].oos_intents``) are held out of training entirely and become out-of-scope traffic:
the bot must hand those messages to an agent instead of guessing. The in-scope utterances are split per
intent with a seeded permutation (``[split]`` fractions), then capped per intent so CPU training stays bounded.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.repository import sha256_file
from compress.config import ChatDataSection, SplitSection
from compress.errors import DataError


@dataclass(frozen=True)
class Pair:
    """One instruction -> response pair of the reply corpus (entity annotations kept for slot filling)."""

    instruction: str
    intent: str
    response: str
    entity_type: str = ""
    entity_value: str = ""


@dataclass
class ChatSplit:
    """Texts and labels per part; ``oos`` holds held-out-intent messages (label -1) for the test AUROC."""

    intents: list[str]
    texts: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    oos_test: list[str] = field(default_factory=list)
    train_pool: list[str] = field(default_factory=list)  # every in-scope training-fraction text (uncapped): vocabulary

    def describe(self, data: ChatDataSection, split: SplitSection, files: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "method": "pooled + de-duplicated Bitext utterances; whole intents held out as out-of-scope; "
                      "per-intent seeded permutation (numpy default_rng) of the in-scope rest, capped per intent",
            "seed": split.seed, "fractions": {"train": split.train, "validation": split.validation, "test": split.test},
            "caps_per_intent": {"train": data.max_train_per_intent, "eval": data.max_eval_per_intent,
                                "oos_test": data.max_oos_per_intent},
            "oos_intents": list(data.oos_intents), "in_scope_intents": len(self.intents),
            "rows": {**{k: len(v) for k, v in self.texts.items()}, "oos_test": len(self.oos_test),
                     "train_pool (student vocabulary)": len(self.train_pool)},
            "files": [Path(f["path"]).name for f in files],
        }


def _read_csv(path: Path, need: list[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist: set [data].path in the config (or DATA_DIR) to the Bitext "
                        "folder; the data are described in shared/data/chatbot/README.md")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # the 20k file starts with a BOM
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e})") from None
    if not rows:
        raise DataError(f"{path} has no rows")
    missing = [c for c in need if c not in rows[0]]
    if missing:
        raise DataError(f"{path}: columns {missing} are missing (found {list(rows[0])})")
    return rows


def text_key(text: str) -> str:
    """De-duplication key: lower case, collapsed whitespace."""
    return " ".join(text.lower().split())


def read_pairs(data: ChatDataSection) -> list[Pair]:
    alias = data.intent_aliases
    rows = _read_csv(data.resolved_path() / data.pairs, ["instruction", "intent", "response"])
    return [Pair(r["instruction"], alias.get(r["intent"], r["intent"]), r["response"], r.get("entity_type") or "",
                 r.get("entity_value") or "") for r in rows]


def read_utterances(data: ChatDataSection, pairs: list[Pair]) -> tuple[list[tuple[str, str]], int]:
    """(text, intent) from the pairs file then the utterance file, first occurrence of each text kept;
    and the utterance file's row count."""
    alias = data.intent_aliases
    rows = _read_csv(data.resolved_path() / data.utterances, ["utterance", "intent"])
    seen: dict[str, str] = {}
    out: list[tuple[str, str]] = []
    for text, intent in [*((p.instruction, p.intent) for p in pairs),
                         *((r["utterance"], alias.get(r["intent"], r["intent"])) for r in rows)]:
        key = text_key(text)
        if not key:
            continue
        if key in seen:
            if seen[key] != intent:
                raise DataError(f"text {text!r} is labelled both {seen[key]!r} and {intent!r}")
            continue
        seen[key] = intent
        out.append((text, intent))
    unknown = [i for i in data.oos_intents if i not in set(seen.values())]
    if unknown:
        raise DataError(f"[data].oos_intents {unknown} are not intents of the data")
    return out, len(rows)


def split_utterances(utts: list[tuple[str, str]], data: ChatDataSection, split: SplitSection) -> ChatSplit:
    """Hold out ``oos_intents``; split every in-scope intent train/validation/test by a seeded permutation."""
    rng = np.random.default_rng(split.seed)
    by_intent: dict[str, list[str]] = {}
    for text, intent in utts:
        by_intent.setdefault(intent, []).append(text)
    intents = sorted(i for i in by_intent if i not in data.oos_intents)
    out = ChatSplit(intents, {"train": [], "validation": [], "test": []})
    labels: dict[str, list[int]] = {k: [] for k in out.texts}
    cap_eval = data.max_eval_per_intent
    caps = {"train": data.max_train_per_intent, "validation": cap_eval, "test": cap_eval}
    for c, intent in enumerate(intents):
        texts = by_intent[intent]
        perm = rng.permutation(len(texts))
        n_train, n_val = int(round(len(texts) * split.train)), int(round(len(texts) * split.validation))
        parts = {"train": perm[:n_train], "validation": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}
        out.train_pool.extend(texts[i] for i in parts["train"])
        for k, idx in parts.items():
            chosen = [texts[i] for i in idx[:caps[k]]]
            out.texts[k].extend(chosen)
            labels[k].extend([c] * len(chosen))
    for intent in sorted(data.oos_intents):
        texts = by_intent[intent]
        out.oos_test.extend(texts[i] for i in rng.permutation(len(texts))[:data.max_oos_per_intent])
    out.labels = {k: np.array(v, dtype=np.int64) for k, v in labels.items()}
    return out


def file_records(data: ChatDataSection, rows: dict[str, int]) -> list[dict[str, Any]]:
    root = data.resolved_path()
    return [{"path": str(root / name), "sha256": sha256_file(root / name), "rows": rows[name]}
            for name in (data.utterances, data.pairs)]
