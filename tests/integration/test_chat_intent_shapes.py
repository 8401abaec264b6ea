"""Intent data sets shaped as users ship them, read by ``[data]`` alone: one JSON object of lists with
out-of-scope lists (CLINC150 layout), separate train/test files without replies (BANKING77 layout); a
``handoff_intents`` name the data lacks is an error before any training; the student search and the refusal's
advice work from measured numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compress.candidates import Candidate
from compress.chat.config import ChatConfig, DistillSection
from compress.chat.student_search import recipes, search_student
from compress.config import SelectSection, parse_config
from compress.errors import DataError
from compress.gate import GateResult
from compress.refusal import what_to_try
from compress.registry import get_task
from tests.fixtures.intent_sets import write_splits_object, write_train_test_files

INTENTS = ["edit_account", "get_invoice", "payment_issue", "recover_password", "track_order", "delivery_period"]
PER_PART = {"train": 20, "val": 6, "test": 10}


def _config(base: ChatConfig, data: dict[str, Any], **reply: Any) -> ChatConfig:
    raw = base.model_dump(mode="json")
    raw["data"] = {"pairs": "", "intent_aliases": {}, **data}
    raw["reply"]["handoff_intents"] = reply.get("handoff_intents", [])
    cfg = parse_config(raw)
    assert isinstance(cfg, ChatConfig)
    return cfg


def _bitext(cfg: ChatConfig) -> Path:
    return cfg.data.resolved_path() / cfg.data.utterances


def _files_data(folder: Path) -> dict[str, Any]:
    """``[data]`` of the train/test-files layout; one intent held out whole (the set has no out-of-scope rows)."""
    return {
        "path": str(folder),
        "utterance_files": {"train": "train.csv", "test": "test.csv"},
        "text_column": "text",
        "label_column": "category",
        "oos_intents": [INTENTS[-1]],
    }


def test_one_json_object_of_lists_is_flattened_into_its_own_split(chat_config: ChatConfig, tmp_path: Path) -> None:
    counts = write_splits_object(_bitext(chat_config), tmp_path / "data_full.json", INTENTS, PER_PART)
    cfg = _config(
        chat_config,
        {
            "path": str(tmp_path),
            "utterances": "data_full.json",
            "format": "json_splits",
            "split_values": {"train": "train", "validation": "val", "test": "test"},
            "oos_splits": {"train": "oos_train", "validation": "oos_val", "test": "oos_test"},
            "oos_label": "oos",
        },
    )
    task = get_task(cfg)
    task.prepare()
    s = task.split  # type: ignore[attr-defined]
    assert s.intents == sorted(INTENTS)
    got = {k: len(v) for k, v in s.texts.items()}
    assert got == {"train": counts["train"], "validation": counts["val"], "test": counts["test"]}, got
    assert len(s.oos_test) == counts["oos_test"]  # out-of-scope train/val lists are never trained on
    assert len(s.oos_validation) == counts["oos_val"]  # the out-of-scope validation list calibrates the threshold
    assert not set(s.oos_validation) & set(s.oos_test), "out-of-scope validation and test rows overlap"
    assert task.data_files[0]["rows"] == sum(counts.values())  # type: ignore[attr-defined]
    assert "keys of one JSON object" in s.describe(cfg.data, cfg.split, task.data_files)["method"]  # type: ignore[attr-defined]


def test_train_and_test_files_are_the_split_and_validation_is_carved_from_train(
    chat_config: ChatConfig, tmp_path: Path
) -> None:
    write_train_test_files(_bitext(chat_config), tmp_path, INTENTS, n_train=30, n_test=12)
    data = _files_data(tmp_path)
    cfg = _config(chat_config, data)
    task = get_task(cfg)
    task.prepare()
    s = task.split  # type: ignore[attr-defined]
    n_in, n_val = len(INTENTS) - 1, round(30 * cfg.split.validation / (cfg.split.train + cfg.split.validation))
    assert len(s.texts["test"]) == n_in * 12 and len(s.oos_test) == 12  # the test file, uncapped
    got = (len(s.texts["validation"]), len(s.texts["train"]))
    assert got == (n_in * n_val, n_in * (30 - n_val)), got  # validation carved per intent from train
    assert not set(s.texts["validation"]) & set(s.texts["train"])
    assert [Path(f["path"]).name for f in task.data_files] == ["train.csv", "test.csv"]  # type: ignore[attr-defined]


def test_a_handoff_intent_the_data_lacks_is_an_error_before_training(chat_config: ChatConfig, tmp_path: Path) -> None:
    write_train_test_files(_bitext(chat_config), tmp_path, INTENTS, n_train=12, n_test=4)
    data = _files_data(tmp_path)
    for name, expected in (
        ("track_ordr", r"'track_ordr', which is not an intent of the data; did you mean 'track_order'\?"),
        ("contact_human_agent", r"'contact_human_agent', which is not an intent"),
        (INTENTS[-1], "out-of-scope label or a held-out intent"),
    ):
        with pytest.raises(DataError, match=expected):
            get_task(_config(chat_config, data, handoff_intents=[name])).prepare()
    get_task(_config(chat_config, data, handoff_intents=["track_order"])).prepare()  # an existing one is fine


def test_student_search_stops_at_the_first_recipe_good_enough_and_respects_the_time_bound() -> None:
    cfg = DistillSection(layers=[1, 3, 5], epochs=3, search_layers=[[0, 2, 4, 5]], search_epochs=[6])
    assert [(list(t.layers), t.epochs) for t in recipes(cfg)] == [
        ([1, 3, 5], 3), ([0, 2, 4, 5], 3), ([1, 3, 5], 6), ([0, 2, 4, 5], 6)
    ]  # fmt: skip
    acc = {(3, 3): 0.93, (4, 3): 0.95, (3, 6): 0.96, (4, 6): 0.99}
    now = [0.0]

    def clock() -> float:
        return now[0]

    def train(layers: list[int], epochs: int) -> tuple[str, float]:
        now[0] += 10.0 * len(layers) * epochs
        return f"{len(layers)}x{epochs}", acc[(len(layers), epochs)]

    student, rec = search_student(train, cfg, 0.96, clock)  # target 0.995 * 0.96 = 0.9552
    assert student == "3x6" and rec["stopped"] == "target reached" and len(rec["trials"]) == 3, rec
    now[0] = 0.0
    bounded = cfg.model_copy(update={"max_search_s": 250.0})  # 90 s + 120 s done; 180 s more would pass it
    student, rec = search_student(train, bounded, 0.99, clock)
    assert student == "4x3" and rec["stopped"].startswith("time bound"), rec


def test_the_refusal_says_what_to_try_with_the_measured_numbers() -> None:
    ref = Candidate("fp32", "reference", bytes=90_000_000)
    int8 = Candidate("int8_dynamic_s8", "passed", bytes=58_000_000)
    gate = GateResult(False, "", {}, ["accuracy 0.94100 < limit 0.94600 (FP32 0.95557)"])
    search = {"teacher_val_accuracy": 0.956, "trials": [{"layers": [1, 3, 5], "epochs": 3, "val_accuracy": 0.94}]}
    student = Candidate("distilled+int8_dynamic_s8", "failed", bytes=8_000_000, gate=gate, recipe={"search": search})
    hints = what_to_try([ref, int8, student], SelectSection(min_compression=4.0), has_student=True)
    text = " | ".join(hints)
    assert "lower [select].min_compression to 1.55" in hints[0], text
    assert "accuracy 0.94100 < limit 0.94600" in text and "0.9400 vs teacher 0.9560" in text, text
    assert "[distill].search_epochs" in text and "[distill].search_layers" in text, text
