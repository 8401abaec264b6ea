"""``POST /v1/chat`` on a real uvicorn server, serving the chatbot that the real compress pipeline published.

Messages are held-out Bitext test utterances (same seeded split as training; never seen in training).
"""

from __future__ import annotations

import concurrent.futures as cf
import time

import numpy as np
import pytest

from app.repository import list_versions
from app.tasks.chat.replies import ReplyIndex, fill_placeholders
from app.tasks.chat.text import ChatState
from compress.chat.config import ChatConfig
from compress.chat.data import read_pairs, read_utterances, split_utterances
from tests.fixtures.compress_run import CompressRun
from tests.fixtures.servers import ServerFactory, ServerProcess, wait_until

MODEL = "chat-intent"


@pytest.fixture(scope="module")
def held_out(chat_config: ChatConfig) -> tuple[list[tuple[str, str]], list[str]]:
    """(message, intent) from the test split, 3 per in-scope intent, and every out-of-scope test message."""
    d = chat_config.data
    utts, _ = read_utterances(d, read_pairs(d))
    split = split_utterances(utts, d, chat_config.split)
    seen: dict[int, int] = {}
    picked = []
    for text, label in zip(split.texts["test"], split.labels["test"], strict=True):
        if seen.get(int(label), 0) < 3:
            seen[int(label)] = seen.get(int(label), 0) + 1
            picked.append((text, split.intents[int(label)]))
    return picked, list(split.oos_test)


@pytest.fixture
def chat_server(chat_compress_run: CompressRun, start_server: ServerFactory) -> ServerProcess:
    # a generous queue budget: on a loaded machine the default one refuses concurrent good requests (503), and the
    # tests here are about answers and codes, not admission (tests/reliability/test_admission.py)
    server = start_server(
        chat_compress_run.repo, APP_REQUIRED_MODELS=MODEL, APP_QUEUE_BUDGETS_MS=f'{{"{MODEL}": 5000}}'
    )
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 120, "chat model readiness")
    return server


def test_held_out_messages_get_their_intent_and_a_reply_from_it(
    chat_compress_run: CompressRun, chat_server: ServerProcess, held_out: tuple[list[tuple[str, str]], list[str]]
) -> None:
    version = list_versions(chat_compress_run.repo, MODEL)[-1]
    vdir = chat_compress_run.repo / MODEL / str(version)
    state, index = ChatState.load(vdir / "chat.json"), ReplyIndex.load(vdir / "replies.npz")
    messages, _ = held_out
    correct = answered = 0
    for text, intent in messages:
        r = chat_server.post("/v1/chat", json={"message": text, "session_id": "s1"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == MODEL and body["version"] == version and body["session_id"] == "s1"
        correct += body["intent"] == intent
        if not body["handoff"]:
            answered += 1
            replies = {
                fill_placeholders(t, text, state.company, state.gazetteer)[0]
                for t, i in zip(index.templates, index.intent_ids, strict=True)
                if index.intents[i] == body["intent"]
            }
            assert body["reply"] in replies  # retrieved from the predicted intent's known requests
    assert correct / len(messages) >= 0.9, f"{correct}/{len(messages)} held-out messages got the right intent"
    assert answered / len(messages) >= 0.7, f"only {answered}/{len(messages)} answered without a handoff"


def test_out_of_scope_messages_are_handed_off(
    chat_config: ChatConfig, chat_server: ServerProcess, held_out: tuple[list[tuple[str, str]], list[str]]
) -> None:
    # the threshold is chosen to hand off target_oos_recall of the out-of-scope *validation* messages; on the
    # unseen test messages the served rate must land near it (0.1 of slack for ~120 messages' sampling noise)
    _, oos = held_out
    handed = [chat_server.post("/v1/chat", json={"message": m}).json()["handoff"] for m in oos]
    bound = chat_config.reply.target_oos_recall - 0.1
    assert len(oos) >= 50 and np.mean(handed) >= bound, (
        f"only {sum(handed)}/{len(oos)} out-of-scope messages were handed off (bound {bound:.2f})"
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"message": ""}', 422, "empty_message"),
        (b'{"message": "   \\n\\t "}', 422, "empty_message"),
        (b'{"message": 42}', 422, "invalid_request"),
        (b'{"text": "hi"}', 422, "invalid_request"),
        (b'{"message": "hi"', 400, "invalid_json"),
        (b'{"message": "\xff\xfe order"}', 400, "invalid_utf8"),
        (('{"message": "' + "x" * 5000 + '"}').encode(), 413, "message_too_long"),
    ],
)
def test_bad_input_gets_a_coded_4xx_and_good_requests_alongside_succeed(
    chat_server: ServerProcess, body: bytes, status: int, code: str
) -> None:
    good = {"message": "I want to cancel my order"}
    with cf.ThreadPoolExecutor(8) as pool:
        goods = [pool.submit(chat_server.post, "/v1/chat", json=good) for _ in range(6)]
        bad = chat_server.post("/v1/chat", content=body, headers={"content-type": "application/json"})
        answers = [f.result() for f in goods]
    assert all(r.status_code == 200 for r in answers), chat_server.saw(*answers)
    assert bad.status_code == status, chat_server.saw(bad)
    assert bad.json()["error"]["code"] == code, chat_server.saw(bad)


def test_long_message_within_chars_is_truncated_with_a_flag(chat_server: ServerProcess) -> None:
    text = "I want to cancel my order " + " ".join(["please"] * 80)  # 585 chars (< 1000), ~88 tokens (> 64)
    body = chat_server.post("/v1/chat", json={"message": text}).json()
    assert body["truncated"] is True and body["intent"] == "cancel_order"


def test_encoder_is_reachable_through_kserve_infer(chat_server: ServerProcess) -> None:
    ids = [[101, 1045, 2215, 2000, 17542, 2026, 2344, 102], [101, 7592, 102, 0, 0, 0, 0, 0]]
    mask = [[1] * 8, [1, 1, 1, 0, 0, 0, 0, 0]]
    req = {
        "inputs": [
            {"name": "input_ids", "shape": [2, 8], "datatype": "INT64", "data": ids},
            {"name": "attention_mask", "shape": [2, 8], "datatype": "INT64", "data": mask},
        ]
    }
    r = chat_server.post(f"/v2/models/{MODEL}/infer", json=req)
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    assert outs["embedding"]["shape"] == [2, 384] and outs["logits"]["shape"][0] == 2
    emb = np.array(outs["embedding"]["data"]).reshape(2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)


def test_messages_built_to_backtrack_cost_no_more_than_ordinary_ones(chat_server: ServerProcess) -> None:
    """Reply parsing runs on the event loop: a message crafted for the entity patterns (a long digit run after
    "refund", a long whitespace run after "order") must cost about what an ordinary message costs, not seconds."""

    def p50(message: str) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            r = chat_server.post("/v1/chat", json={"message": message})
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
        return float(np.median(times))

    ordinary = p50("I want a refund of 40 dollars for order 12345678")
    for crafted in (
        "refund " + "1" * 993,
        "order" + " " * 990 + "x",
        "refund of " + "1," * 495,
        "tracking" + " " * 990 + "x",
    ):
        took = p50(crafted)
        assert took < 5 * ordinary + 0.25, f"{crafted[:12]!r}...: p50 {took * 1e3:.0f} ms vs {ordinary * 1e3:.0f} ms"
