"""The published CI chatbot on plain customer phrasing (tests/fixtures/plain_phrasings.json), not template text."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.repository import list_versions, read_manifest
from app.tasks.chat.text import load_version, softmax
from compress.chat.plain import load_plain, score_plain
from compress.chat.threshold import calibrate_threshold
from compress.registry import get_task
from tests.fixtures.compress_run import CompressRun

MODEL = "chat-intent"
# Measured (docs/compression.md, "Plain customer phrasing"): the CI config's published student
# (distilled+int8_dynamic_s8) 0.833 accuracy / 0.639 answered (12 / 21 messages above the floors); the demo's
# student 0.819 / 0.653. The floors sit well below those, so a rerun on another CPU (same seeds) cannot trip
# them, and far above chance (1/24 = 0.04): a bot that lost plain phrasing fails.
MIN_ACCURACY = 0.65
MIN_ANSWERED = 0.30
# The same student hands off 0.333 of the plain messages (24 / 72) with the threshold calibrated on out-of-scope
# validation rows, 0.375 (27 / 72) with the in-scope coverage quantile it replaced. The bound leaves two messages
# for INT8 kernels rounding differently on another CPU (26 / 72) and still fails the coverage rule's threshold.
MAX_HANDOFF = 0.362


def test_published_chatbot_answers_plain_phrasing_above_the_measured_floor(chat_compress_run: CompressRun) -> None:
    rows = load_plain()
    assert len(rows) >= 40 and len({k for _, k in rows}) == 24, "the plain set covers every in-scope intent"
    version = list_versions(chat_compress_run.repo, MODEL)[-1]
    vdir = chat_compress_run.repo / MODEL / str(version)
    score = score_plain(vdir, rows)
    shown = [(m["text"], m["got"], m["confidence"]) for m in score["misses"]][:10]
    assert score["accuracy"] >= MIN_ACCURACY, f"plain-set accuracy {score['accuracy']} < {MIN_ACCURACY}: {shown}"
    assert score["answered"] >= MIN_ANSWERED, (
        f"answered correctly (right intent, no handoff) {score['answered']} < {MIN_ANSWERED}; "
        f"handoff rate {score['handoff_rate']}: {shown}"
    )
    # the score depends on the labels: the same messages with every label moved to the next intent score low
    intents = sorted({k for _, k in rows})
    shifted = [(t, intents[(intents.index(k) + 1) % len(intents)]) for t, k in rows]
    wrong = score_plain(vdir, shifted)
    assert wrong["accuracy"] < 0.2, f"shifted labels still score {wrong['accuracy']}: the scorer ignores labels"


def test_plain_handoff_is_bounded_by_a_threshold_calibrated_on_validation(chat_compress_run: CompressRun) -> None:
    from compress.evaluate import session
    from compress.minilm.onnx import predict_trimmed

    repo, cfg = chat_compress_run.repo, chat_compress_run.cfg
    vdir = repo / MODEL / str(list_versions(repo, MODEL)[-1])
    manifest = read_manifest(vdir)
    record = manifest.lineage.split["training"]["handoff_threshold"]
    assert record["rule"] == "oos_recall" and record["split"] == "validation", record
    # recompute it from the validation rows alone, batched as publishing does: the published threshold is that one
    task: Any = get_task(cfg)
    task.prepare(vdir)
    sess = session(vdir / "model.onnx", threads=2)
    _, post = load_version(vdir, manifest)

    def confidences(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(softmax(predict_trimmed(sess, feeds, ["logits"])[0]).max(axis=1))

    in_conf = confidences(task.feeds["validation"])
    oos_conf = confidences(task._feeds(task.tok.encode(task.split.oos_validation)))
    thr, _ = calibrate_threshold(in_conf, oos_conf, cfg.reply)
    assert abs(post.state.threshold - thr) < 1e-5, f"published {post.state.threshold} vs validation's {thr}"
    assert np.mean(oos_conf < thr) >= cfg.reply.target_oos_recall, "the threshold misses its OOS recall target"
    plain = {t for t, _ in load_plain()}
    seen = plain & {*task.split.texts["validation"], *task.split.oos_validation, *task.split.texts["train"]}
    assert not seen, f"plain-phrasing messages are in the training or validation data: {sorted(seen)[:5]}"
    # the bound, and below the in-scope coverage quantile's handoff on the same model
    score = score_plain(vdir, load_plain())
    coverage_thr = float(np.quantile(in_conf, 1.0 - cfg.reply.target_coverage))
    before = float(np.mean(confidences(task._feeds(task.tok.encode(sorted(plain)))) < coverage_thr))
    assert score["handoff_rate"] <= MAX_HANDOFF, f"plain handoff {score['handoff_rate']} > {MAX_HANDOFF}"
    assert score["handoff_rate"] <= before, f"plain handoff {score['handoff_rate']} > coverage rule's {before}"
