"""An intent data set as ``[data]`` describes it: utterances with intents, optional reply pairs, the split.

Texts are de-duplicated (case- and whitespace-insensitive). A text carrying two labels is dropped (and
counted), kept under its majority label, or an error, as ``[data].double_labels`` says. Out-of-scope traffic
(``oos_intents`` held out whole, or rows labelled ``oos_label``) is never trained on: the bot must hand those
messages to an agent. Without an own split the in-scope utterances are split per intent with a seeded
permutation (``[split]`` fractions) and capped per intent so CPU training stays bounded; with one (a split
column, one file per part, or the keys of a JSON object of lists), the data set's own train/validation/test
parts are used (training capped per intent, test rows never), so results can be compared with published
figures; a missing validation part is carved per intent from the training part.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import names_hint
from app.repository import sha256_file
from compress.chat.config import ChatDataSection
from compress.chat.tables import read_records, read_split_object
from compress.config import SplitSection
from compress.errors import DataError

PARTS = ("train", "validation", "test")


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
    """Texts and labels per part; ``oos_test`` holds out-of-scope messages (label -1) for the test AUROC,
    ``oos_validation`` other out-of-scope messages for calibrating the handoff threshold (never tested on)."""

    intents: list[str]
    texts: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    oos_test: list[str] = field(default_factory=list)
    oos_validation: list[str] = field(default_factory=list)
    train_pool: list[str] = field(default_factory=list)  # every in-scope training-fraction text (uncapped): vocabulary
    labels_report: dict[str, Any] = field(default_factory=dict)  # double-label policy and counts

    def describe(self, data: ChatDataSection, split: SplitSection, files: list[dict[str, Any]]) -> dict[str, Any]:
        own = data.own_split
        return {
            "method": (
                f"the data set's own split ({_own_split_source(data)}); training capped per intent, test rows never"
                + ("" if data.own_validation else "; validation carved per intent from its training part (seeded)")
                if own
                else "pooled + de-duplicated utterances; per-intent seeded permutation (numpy default_rng) of the "
                "in-scope rest, capped per intent"
            ),
            "own_split": own,
            "seed": split.seed,
            **(
                {} if own else {"fractions": {"train": split.train, "validation": split.validation, "test": split.test}}
            ),
            "caps_per_intent": {
                "train": data.max_train_per_intent,
                "eval": data.max_eval_per_intent,
                "oos_test": data.max_oos_per_intent,
            },
            "oos_intents": list(data.oos_intents),
            "oos_label": data.oos_label,
            "in_scope_intents": len(self.intents),
            "double_labels": self.labels_report,
            "rows": {
                **{k: len(v) for k, v in self.texts.items()},
                "oos_test": len(self.oos_test),
                "oos_validation": len(self.oos_validation),
                "train_pool (student vocabulary)": len(self.train_pool),
            },
            "files": [Path(f["path"]).name for f in files],
        }


def _own_split_source(data: ChatDataSection) -> str:
    if data.utterance_files:
        return f"one file per part: {data.utterance_files}"
    if data.format == "json_splits":
        return f"keys of one JSON object: {data.split_values}" + (
            f", out-of-scope {data.oos_splits}" if data.oos_splits else ""
        )
    return f"column {data.split_column!r}"


def text_key(text: str) -> str:
    """De-duplication key: lower case, collapsed whitespace."""
    return " ".join(text.lower().split())


def read_pairs(data: ChatDataSection) -> list[Pair]:
    """The responses file's pairs, or none when ``[data].pairs`` is empty."""
    if not data.pairs:
        return []
    alias, d = data.intent_aliases, data
    fmt = "auto" if data.format == "json_splits" else data.format  # the pairs file is a table of its own
    rows = read_records(
        data.resolved_path() / data.pairs, fmt, [d.pairs_text_column, d.pairs_label_column, d.response_column]
    )
    return [
        Pair(
            r[d.pairs_text_column],
            alias.get(r[d.pairs_label_column], r[d.pairs_label_column]),
            r[d.response_column],
            r.get("entity_type") or "",
            r.get("entity_value") or "",
        )
        for r in rows
    ]


def resolve_labels(
    rows: Sequence[tuple[str, str, str]], policy: str
) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """One label per de-duplicated text (first occurrence's text and part kept); ``policy`` decides conflicts."""
    counts: dict[str, Counter[str]] = {}
    first: dict[str, tuple[str, str]] = {}
    for text, intent, part in rows:
        key = text_key(text)
        if not key:
            continue
        counts.setdefault(key, Counter())[intent] += 1
        first.setdefault(key, (text, part))
    out: list[tuple[str, str, str]] = []
    dropped = kept_majority = 0
    for key, c in counts.items():
        text, part = first[key]
        if len(c) == 1:
            out.append((text, next(iter(c)), part))
            continue
        if policy == "error":
            raise DataError(f"text {text!r} is labelled {sorted(c)}: set [data].double_labels = 'drop' or 'majority'")
        (top, n_top), *rest = c.most_common()
        if policy == "majority" and n_top > rest[0][1]:
            out.append((text, top, part))
            kept_majority += 1
        else:
            dropped += 1
    report = {
        "policy": policy,
        "texts_with_two_or_more_labels": dropped + kept_majority,
        "dropped": dropped,
        "kept_majority": kept_majority,
    }
    return out, report


class Utterances(list[tuple[str, str, str]]):
    """(text, intent, part) rows, with the double-label policy's counts (recorded in the lineage)."""

    def __init__(self, rows: Sequence[tuple[str, str, str]], labels_report: dict[str, Any]) -> None:
        super().__init__(rows)
        self.labels_report = labels_report


def _tagged_rows(data: ChatDataSection) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """(text, raw intent, part) from the utterance file(s), and the row count per file."""
    d, root = data, data.resolved_path()
    if d.format == "json_splits":
        lists = read_split_object(root / d.utterances, d.text_column, d.label_column)
        keys = {v: k for k, v in d.split_values.items()}
        oos_keys = {v: k for k, v in d.oos_splits.items()}
        unknown = sorted(set(lists) - set(keys) - set(oos_keys))
        absent = sorted((set(keys) | set(oos_keys)) - set(lists))
        if unknown or absent:
            raise DataError(
                f"{d.utterances}: keys {unknown} are in neither [data].split_values nor [data].oos_splits, keys "
                f"{absent} are named there but absent (the object has {sorted(lists)})"
            )
        out = [(t, i, keys[k]) for k, rows in lists.items() if k in keys for t, i in rows]
        out += [(t, d.oos_label, oos_keys[k]) for k, rows in lists.items() if k in oos_keys for t, _ in rows]
        return out, {d.utterances: sum(len(v) for v in lists.values())}
    need = [d.text_column, d.label_column, *([d.split_column] if d.split_column else [])]
    if d.utterance_files:
        out, counts = [], {}
        for part, name in d.utterance_files.items():
            rows = read_records(root / name, d.format, need)
            out += [(r[d.text_column], r[d.label_column], part) for r in rows]
            counts[name] = len(rows)
        return out, counts
    rows = read_records(root / d.utterances, d.format, need)
    parts = {v: k for k, v in d.split_values.items()}
    out = []
    for i, r in enumerate(rows):
        part = ""
        if d.split_column:
            part = parts.get(r[d.split_column], "")
            if not part:
                raise DataError(
                    f"{d.utterances} row {i + 1}: split value {r[d.split_column]!r} is not one of "
                    f"[data].split_values {sorted(parts)}"
                )
        out.append((r[d.text_column], r[d.label_column], part))
    return out, {d.utterances: len(rows)}


def read_utterances(data: ChatDataSection, pairs: list[Pair]) -> tuple[Utterances, dict[str, int]]:
    """(text, intent, part) per distinct text, and the row count per utterance file.

    ``part`` is the data set's own split ('train'/'validation'/'test') with an own split, else ''. Without
    one, the pairs' instructions are training/evaluation texts too (listed first); with one, pairs are only the
    reply corpus (they carry no split and would leak into the test part).
    """
    d, alias = data, data.intent_aliases
    rows, counts = _tagged_rows(d)
    tagged: list[tuple[str, str, str]] = []
    if not d.own_split:
        tagged += [(p.instruction, p.intent, "") for p in pairs]
    tagged += [(text, alias.get(intent, intent), part) for text, intent, part in rows]
    out, report = resolve_labels(tagged, d.double_labels)
    labels = {intent for _, intent, _ in out}
    unknown = [i for i in d.oos_intents if i not in labels]
    if unknown:
        raise DataError(f"[data].oos_intents {unknown} are not intents of the data")
    if d.oos_label and d.oos_label not in labels:
        raise DataError(f"[data].oos_label {d.oos_label!r} is not a label of the data")
    return Utterances(out, report), counts


def _is_oos(intent: str, data: ChatDataSection) -> bool:
    return intent in data.oos_intents or (bool(data.oos_label) and intent == data.oos_label)


def split_utterances(utts: Sequence[tuple[str, ...]], data: ChatDataSection, split: SplitSection) -> ChatSplit:
    """Out-of-scope texts to the OOS test set; in-scope ones split (own split, or seeded per intent) and capped."""
    rng = np.random.default_rng(split.seed)
    own = data.own_split
    by_intent: dict[str, dict[str, list[str]]] = {}
    for text, intent, *rest in utts:
        part = rest[0] if (own and rest) else ""
        by_intent.setdefault(intent, {}).setdefault(part, []).append(text)
    intents = sorted(i for i, parts in by_intent.items() if not _is_oos(i, data) and (not own or parts.get("train")))
    if own:
        untrained = sorted(i for i in by_intent if not _is_oos(i, data) and i not in intents)
        if untrained:
            raise DataError(f"intents {untrained} have no training rows in the data set's own split")
    out = ChatSplit(intents, {k: [] for k in PARTS}, labels_report=getattr(utts, "labels_report", {}))
    labels: dict[str, list[int]] = {k: [] for k in PARTS}
    cap_eval = data.max_eval_per_intent
    caps = {"train": data.max_train_per_intent, "validation": cap_eval, "test": None if own else cap_eval}
    for c, intent in enumerate(intents):
        chosen_parts = (
            _own_parts(by_intent[intent], rng, None if data.own_validation else split)
            if own
            else _seeded_parts(by_intent[intent][""], split, rng)
        )
        out.train_pool.extend(chosen_parts["train"])
        for k, texts in chosen_parts.items():
            chosen = texts[: caps[k]] if caps[k] is not None else texts
            out.texts[k].extend(chosen)
            labels[k].extend([c] * len(chosen))
    for intent in sorted(i for i in by_intent if _is_oos(i, data)):
        if own:
            texts = by_intent[intent].get("test", [])
            out.oos_test.extend(texts[i] for i in rng.permutation(len(texts)))
            out.oos_validation.extend(by_intent[intent].get("validation", []))
            continue
        texts, cap = by_intent[intent].get("", []), data.max_oos_per_intent
        perm = rng.permutation(len(texts))
        out.oos_test.extend(texts[i] for i in perm[:cap])
        out.oos_validation.extend(texts[i] for i in perm[cap : 2 * cap])  # after the test rows: test unchanged
    out.labels = {k: np.array(v, dtype=np.int64) for k, v in labels.items()}
    return out


def check_handoff_intents(names: Sequence[str], split: ChatSplit, data: ChatDataSection) -> None:
    """Every ``[reply].handoff_intents`` name must be an in-scope intent of the data: an error, not a warning.

    A misspelt or absent name would silently disable the handoff it asks for (customers asking for a person get
    a self-service reply); the check runs before any training, so stopping costs seconds.
    """
    for name in names:
        if name in split.intents:
            continue
        if _is_oos(name, data):
            raise DataError(
                f"[reply].handoff_intents names {name!r}, the data's out-of-scope label or a held-out intent: it is "
                "never predicted (out-of-scope messages are handed off by the confidence threshold); remove it"
            )
        raise DataError(
            f"[reply].handoff_intents names {name!r}, which is not an intent of the data; "
            f"{names_hint(name, split.intents, 'intents')} (set handoff_intents = [] for none)"
        )


def _seeded_parts(texts: list[str], split: SplitSection, rng: np.random.Generator) -> dict[str, list[str]]:
    perm = rng.permutation(len(texts))
    n_train, n_val = round(len(texts) * split.train), round(len(texts) * split.validation)
    idx = {"train": perm[:n_train], "validation": perm[n_train : n_train + n_val], "test": perm[n_train + n_val :]}
    return {k: [texts[i] for i in v] for k, v in idx.items()}


def _own_parts(
    parts: dict[str, list[str]], rng: np.random.Generator, carve: SplitSection | None = None
) -> dict[str, list[str]]:
    """The data set's parts; training and validation shuffled (seeded) so their caps take a random subset.

    With ``carve`` (the data set has no validation part), validation is the share ``validation / (train +
    validation)`` of the shuffled training texts, at least one when the intent has two or more.
    """
    out = {}
    for k in PARTS:
        texts = parts.get(k, [])
        out[k] = texts if k == "test" else [texts[i] for i in rng.permutation(len(texts))]
    if carve is not None:
        train = out["train"]
        n_val = round(len(train) * carve.validation / (carve.train + carve.validation))
        n_val = min(max(n_val, 1), len(train) - 1) if len(train) > 1 else 0
        out["validation"], out["train"] = train[:n_val], train[n_val:]
    return out


def file_records(data: ChatDataSection, rows: dict[str, int]) -> list[dict[str, Any]]:
    root = data.resolved_path()
    names = [*data.utterance_file_names(), *([data.pairs] if data.pairs else [])]
    return [{"path": str(root / name), "sha256": sha256_file(root / name), "rows": rows[name]} for name in names]
