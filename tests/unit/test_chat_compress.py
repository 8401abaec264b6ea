"""Offline chatbot pieces: config dispatch and errors, the split, metrics, reply templates, the student."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compress.chat.config import ChatConfig
from compress.chat.data import Pair, split_utterances
from compress.chat.replies import gazetteer, templatize
from compress.cli import main
from compress.config import PROJECT_ROOT, CompressConfig, SplitSection, load_config, parse_config
from compress.errors import ConfigError
from compress.metrics import intent_metrics

CHAT = PROJECT_ROOT / "compress" / "configs" / "chatbot.toml"


def test_each_task_gets_its_own_config_shape() -> None:
    assert type(load_config(CHAT)) is ChatConfig
    assert type(load_config(PROJECT_ROOT / "compress" / "configs" / "ad_ctr.toml")) is CompressConfig


def test_chat_config_errors_are_one_clear_line(tmp_path: Path) -> None:
    text = CHAT.read_text()
    cases = {
        text.replace("[distill]\n", "[distill]\nlayerz = 2\n"): "distill.layerz: unknown key",
        text.replace(
            'oos_intents = ["check_cancellation_fee", "newsletter_subscription", "review"]', ""
        ): "data: Value error, name the out-of-scope data: data.oos_intents",
        text.replace("target_coverage = 0.95", "target_coverage = 1.5"): "reply.target_coverage",
    }
    for body, expected in cases.items():
        (tmp_path / "c.toml").write_text(body)
        with pytest.raises(ConfigError, match=expected.replace(".", r"\.")) as e:
            load_config(tmp_path / "c.toml")
        assert "\n" not in str(e.value)


def test_missing_chat_data_folder_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-q", "run", str(CHAT), "--repo", str(tmp_path / "repo"), "--data", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "does not exist" in err and "[data].path" in err
    assert not (tmp_path / "repo" / "chat-intent").exists() or not any((tmp_path / "repo" / "chat-intent").iterdir())


def test_split_holds_whole_intents_out_and_is_seeded() -> None:
    cfg = parse_config(
        {
            "model": {"name": "c", "task": "chat_intent"},
            "candidates": ["fp32"],
            "data": {
                "path": "/x",
                "oos_intents": ["c"],
                "max_train_per_intent": 10,
                "max_eval_per_intent": 5,
                "max_oos_per_intent": 5,
            },
        }
    )
    assert isinstance(cfg, ChatConfig)
    utts = [(f"{intent} text {i}", intent) for intent in "abc" for i in range(40)]
    one = split_utterances(utts, cfg.data, SplitSection(seed=1, train=0.5, validation=0.25, test=0.25))
    two = split_utterances(utts, cfg.data, SplitSection(seed=1, train=0.5, validation=0.25, test=0.25))
    assert one.texts == two.texts and one.intents == ["a", "b"]
    assert {len(v) for v in one.texts.values()} == {20, 10} and len(one.oos_test) == 5
    assert all(t.startswith("c ") for t in one.oos_test), one.oos_test
    # out-of-scope validation: the next rows of the same permutation, disjoint from the test rows
    assert len(one.oos_validation) == 5 and all(t.startswith("c ") for t in one.oos_validation), one.oos_validation
    assert not set(one.oos_validation) & set(one.oos_test), (one.oos_validation, one.oos_test)
    assert not any(t.startswith("c ") for part in one.texts.values() for t in part)
    parts = [set(v) for v in one.texts.values()]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(one.train_pool) == 40  # the uncapped training fraction (vocabulary only)


def test_intent_metrics() -> None:
    logits = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 5.0, 0], [0.1, 0, 0], [0, 0, 0.2]])
    labels = np.array([0, 1, 2, -1, -1])
    m = intent_metrics(logits, labels)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["oos_auroc"] == pytest.approx(1.0) and m["oos_recall_at_95"] == pytest.approx(1.0)


def test_templates_replace_the_pairs_literal_entity_values() -> None:
    bill = Pair(
        "see my bill #00108", "check_invoice", "Your bill #00108 is ready.\r\nFeel free to ask.", "invoice_id", "#00108"
    )
    assert templatize(bill) == "Your bill {{Invoice Number}} is ready.\nFeel free to ask."
    acct = Pair(
        "open a free account",
        "create_account",
        'Feel free to open a free account: pick "free" and {{Website Name}}.',
        "account_type",
        "free",
    )
    assert templatize(acct) == (
        "Feel free to open a {{Account Type}} account: pick {{Account Type}} and {{Website Name}}."
    )
    order = Pair(
        "cancel order 00004587345", "cancel_order", "Order 4587345 ({{4587345}}) is cancelled.", "order_id", "4587345"
    )
    assert templatize(order) == "Order {{Order Number}} ({{Order Number}}) is cancelled."
    assert gazetteer([acct, bill]) == {"account_type": ["free"]}


def test_student_maps_pruned_tokens_to_unk() -> None:
    torch = pytest.importorskip("torch")
    from compress.minilm.model import UNK_ID, Encoder, make_student

    torch.manual_seed(0)
    teacher = Encoder(vocab=120, n_layers=2, n_intents=3).eval()
    student = make_student(teacher, [1], torch.tensor([0, 5, UNK_ID, 101, 102]), max_pos=16).eval()
    assert student.word.num_embeddings == 5 and len(student.layers) == 1 and student.position.num_embeddings == 16
    ids = torch.tensor([[101, 5, 7, 102], [101, 5, UNK_ID, 102]])  # 7 was pruned -> [UNK]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        logits, emb = student(ids, mask)
    assert logits.shape == (2, 3) and torch.allclose(emb[0], emb[1])
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_double_labels_are_dropped_counted_or_kept_by_majority() -> None:
    from compress.chat.data import resolve_labels
    from compress.errors import DataError

    rows = [
        ("Cancel it", "cancel", ""),
        ("cancel  IT", "cancel", ""),
        ("cancel it", "refund", ""),
        ("where is it", "track", ""),
        ("Where is it", "refund", ""),
        ("hi", "greet", ""),
    ]
    dropped, report = resolve_labels(rows, "drop")
    assert dropped == [("hi", "greet", "")] and report["dropped"] == 2 and report["kept_majority"] == 0
    majority, report = resolve_labels(rows, "majority")  # 2 x cancel beat 1 x refund; track/refund is a tie
    assert majority == [("Cancel it", "cancel", ""), ("hi", "greet", "")] and report["kept_majority"] == 1
    with pytest.raises(DataError, match="double_labels"):
        resolve_labels(rows, "error")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl"])
def test_every_format_reads_the_same_records(tmp_path: Path, fmt: str) -> None:
    import json

    from compress.chat.tables import read_records
    from compress.errors import DataError

    rows = [{"text": "cancel, please", "label": "cancel"}, {"text": "where is it", "label": "track"}]
    path = tmp_path / f"d.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        sep = "," if fmt == "csv" else "\t"
        path.write_text(
            f"text{sep}label\n"
            + "".join((f'"{r["text"]}"' if fmt == "csv" else r["text"]) + f"{sep}{r['label']}\n" for r in rows)
        )
    assert read_records(path, "auto", ["text", "label"]) == rows
    with pytest.raises(DataError, match=r"columns \['utterance'\] are missing"):
        read_records(path, "auto", ["utterance"])
