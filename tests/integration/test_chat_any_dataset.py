"""An intent data set shaped unlike Bitext, described by ``[data]`` alone: JSON Lines, other column names, its own
split (with its own part names), no responses file, an out-of-scope label, and texts carrying two labels.

The set is derived from the shipped Bitext utterances inside the test (nothing is written to the repository).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.repository import list_versions, load_verified
from app.tasks.chat.replies import ReplyIndex, compose_reply
from compress.chat.config import ChatConfig
from compress.cli import main
from compress.config import parse_config
from compress.pipeline import run
from compress.registry import get_task

# intents with at least 45 distinct utterances in the 20k file (its cancel_order has only 32)
INTENTS = [
    "edit_account",
    "change_shipping_address",
    "check_refund_policy",
    "delivery_period",
    "get_invoice",
    "payment_issue",
    "recover_password",
    "track_order",
]
OOS_SOURCE = "newsletter_subscription"  # becomes the data set's "oos" label
PARTS = {"trn": 25, "dev": 8, "tst": 12}  # rows per intent and part
DOUBLE = 5  # texts that appear a second time with another label: dropped and counted


def derive(src: Path, out: Path) -> dict[str, Any]:
    """JSONL rows {"text", "label", "fold"} from the Bitext 20k utterances; returns what was written."""
    with open(src, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(7)
    by: dict[str, list[str]] = {}
    for r in rows:
        by.setdefault(r["intent"], []).append(r["utterance"])
    records: list[dict[str, str]] = []
    seen: set[str] = set()
    for intent in [*INTENTS, OOS_SOURCE]:
        keyed = {" ".join(t.lower().split()): t for t in by[intent]}  # one text per de-duplication key
        texts = [t for k, t in keyed.items() if k not in seen]
        picked = [texts[i] for i in rng.permutation(len(texts))[: sum(PARTS.values())]]
        seen.update(" ".join(t.lower().split()) for t in picked)
        label = "oos" if intent == OOS_SOURCE else intent
        start = 0
        for fold, n in PARTS.items():
            records += [{"text": t, "label": label, "fold": fold} for t in picked[start : start + n]]
            start += n
    doubled = [r for r in records if r["label"] == INTENTS[0] and r["fold"] == "trn"][:DOUBLE]
    records += [{"text": r["text"].upper(), "label": INTENTS[1], "fold": "trn"} for r in doubled]  # same text
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    return {
        "test_rows": len(INTENTS) * PARTS["tst"],
        "oos_test": PARTS["tst"],
        "train_rows": len(INTENTS) * PARTS["trn"] - DOUBLE,
    }


@pytest.fixture(scope="module")
def derived(chat_config: ChatConfig, tmp_path_factory: pytest.TempPathFactory) -> tuple[ChatConfig, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("intents")
    facts = derive(chat_config.data.resolved_path() / chat_config.data.utterances, folder / "intents.jsonl")
    raw = chat_config.model_dump(mode="json")
    raw["data"] = {
        "path": str(folder),
        "utterances": "intents.jsonl",
        "text_column": "text",
        "label_column": "label",
        "split_column": "fold",
        "split_values": {"train": "trn", "validation": "dev", "test": "tst"},
        "pairs": "",
        "intent_aliases": {},
        "oos_label": "oos",
        "double_labels": "drop",
    }
    raw["reply"]["handoff_intents"] = []  # the set has no request-for-a-person intent (a named one must exist)
    raw["candidates"] = ["fp32", "int8_dynamic_u8"]
    raw["select"].update(min_compression=1.0)
    raw["gate"]["rules"] = [
        {"metric": "accuracy", "kind": "min_ratio", "value": 0.97},
        {"metric": "oos_auroc", "kind": "max_abs_drop", "value": 0.03},
    ]
    raw["latency"].update(batch_sizes=[1, 8], repeats=5)
    raw["publish"].update(warmup_batch_sizes=[1, 8])
    cfg = parse_config(raw)
    assert isinstance(cfg, ChatConfig)
    return cfg, facts


def test_the_derived_set_is_read_as_described(derived: tuple[ChatConfig, dict[str, Any]]) -> None:
    cfg, facts = derived
    task = get_task(cfg)
    task.prepare()
    s = task.split  # type: ignore[attr-defined]
    assert s.intents == sorted(INTENTS)  # "oos" is never an intent
    assert len(s.texts["test"]) == facts["test_rows"]  # the data set's own test part, uncapped
    assert len(s.texts["train"]) == facts["train_rows"] and len(s.oos_test) == facts["oos_test"]
    assert s.labels_report == {
        "policy": "drop",
        "texts_with_two_or_more_labels": DOUBLE,
        "dropped": DOUBLE,
        "kept_majority": 0,
    }
    assert all(t.upper() != t for t in s.texts["train"]), [t for t in s.texts["train"] if t.upper() == t][
        :5
    ]  # the doubled texts are gone from every part


def test_pipeline_publishes_a_model_that_answers_intent_and_confidence_only(
    derived: tuple[ChatConfig, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime as ort

    from app.tasks.chat.text import ChatPreprocessor, ChatState

    cfg, facts = derived
    repo = tmp_path / "repo"
    run(cfg, repo, workdir=tmp_path / "work")
    assert list_versions(repo, cfg.model.name) == [1, 2]
    ref, manifest = load_verified(repo, cfg.model.name, 2)
    split = manifest.lineage.split
    assert split["own_split"] is True and split["rows"]["test"] == facts["test_rows"]
    assert split["double_labels"]["dropped"] == DOUBLE and split["synthetic"] is False
    assert [t.shape for t in manifest.outputs] == [[-1, len(INTENTS)], [-1, 384]]
    assert manifest.recipe["selection"]["selected"] == manifest.candidate
    index = ReplyIndex.load(ref.path / manifest.aux("reply_index").path)
    assert not index.has_replies
    state = ChatState.load(ref.path / manifest.aux("preprocess").path)
    pre = ChatPreprocessor.load(ref.path, state)
    task = get_task(cfg)
    task.prepare(ref.path)
    texts, labels = task.split.texts["test"], task.split.labels["test"]  # type: ignore[attr-defined]
    sess = ort.InferenceSession(str(ref.path / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, _ = sess.run(
        ["logits", "embedding"], dict(zip(["input_ids", "attention_mask"], pre.batch(texts), strict=True))
    )
    assert np.mean(logits.argmax(1) == labels) >= 0.85  # 8 intents, 25 training rows each
    p = np.exp(logits - logits.max(1, keepdims=True))
    conf = (p / p.sum(1, keepdims=True)).max(1)
    answers = [
        compose_reply(
            t,
            state.intents[int(k)],
            float(c),
            threshold=state.threshold,
            template=None,
            handoff_reply=state.handoff_reply,
            has_replies=index.has_replies,
        )
        for t, k, c in zip(texts, logits.argmax(1), conf, strict=True)
    ]
    assert all(a.reply is None for a in answers if not a.handoff) and {a.kind for a in answers} <= {
        "intent_only",
        "handoff",
        "small_talk",
    }
    assert main(["-q", "evaluate", str(ref.path)]) == 0 and "reproduced" in capsys.readouterr().out
