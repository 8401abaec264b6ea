"""The chatbot compress pipeline on the real Bitext data, and the published version through the serving code path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.repository import list_versions, load_verified
from app.tasks.chat.text import load_version
from compress.cli import main
from compress.metrics import roc_auc
from compress.registry import get_task
from compress.robustness.perturb import TEXT_KINDS
from tests.fixtures.checks import expect_robustness
from tests.fixtures.compress_run import CompressRun

MODEL = "chat-intent"
TARGET = "distilled+int8_dynamic_s8"


def _report(run: CompressRun) -> dict:  # type: ignore[type-arg]
    return json.loads((run.repo / MODEL / "2" / "report.json").read_text())


def test_published_student_passes_the_gate_and_is_small(chat_compress_run: CompressRun) -> None:
    repo = chat_compress_run.repo
    assert list_versions(repo, MODEL) == [1, 2]
    _, teacher = load_verified(repo, MODEL, 1)  # verifies every sha256, aux files included
    _, best = load_verified(repo, MODEL, 2)
    assert teacher.candidate == "fp32" and "distilled" in best.candidate and "int8" in best.candidate
    fp32, cand = best.metrics["fp32"], best.metrics["candidate"]
    assert best.gate.passed and cand["accuracy"] >= 0.99 * fp32["accuracy"]
    assert cand["oos_auroc"] >= fp32["oos_auroc"] - 0.01
    assert fp32["accuracy"] >= 0.97 and fp32["oos_auroc"] >= 0.95
    ratio = teacher.artifact().bytes / best.artifact().bytes
    assert ratio >= 4, f"published student is only {ratio:.2f}x smaller than the FP32 teacher"
    assert set(best.latency) == {"1", "8", "32"}
    print(
        f"size ratio {ratio:.1f}x; latency ratio vs teacher "
        + ", ".join(f"b{b}: {teacher.latency[b] / best.latency[b]:.1f}x" for b in ("1", "8", "32"))
    )
    assert [t.name for t in best.inputs] == ["input_ids", "attention_mask"]
    assert [(t.name, t.shape) for t in best.outputs] == [("logits", [-1, 24]), ("embedding", [-1, 384])]
    assert best.preprocessing is not None and best.preprocessing.kind == "chat"
    assert {a.role for a in best.aux_files} == {"preprocess", "report", "tokenizer", "reply_index"}


def test_every_candidate_is_reported_with_the_tfidf_baseline(chat_compress_run: CompressRun) -> None:
    report = _report(chat_compress_run)
    cands = {c["name"]: c for c in report["candidates"]}
    assert set(chat_compress_run.cfg.candidates) <= set(cands)
    for c in cands.values():
        assert c["status"] in {"reference", "passed", "failed"}, c
        assert c["bytes"] > 0 and set(c["latency_ms"]) == {"1", "8", "32"}
        assert {"accuracy", "macro_f1", "oos_auroc"} <= set(c["metrics"])
    assert cands[TARGET]["status"] == "passed" and cands["fp32"]["bytes"] / cands[TARGET]["bytes"] >= 4
    assert cands["fp32"]["recipe"]["fused"]["Attention"] == 6  # ORT transformer optimizer applied
    assert {"accuracy", "macro_f1", "oos_auroc", "char_accuracy"} <= set(report["baseline"])


def test_held_out_messages_through_the_serving_path(chat_compress_run: CompressRun) -> None:
    import onnxruntime as ort

    ref, manifest = load_verified(chat_compress_run.repo, MODEL, 2)
    vdir = ref.path
    task: Any = get_task(chat_compress_run.cfg)  # the chat adapter: its split is read below
    task.prepare(vdir)  # rebuilds the stated split; the published tokenizer and state
    pre, post = load_version(vdir, manifest)
    state = post.state
    assert 0 < state.threshold < 1 and pre.max_tokens == 64
    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])

    def serve(messages: list[str]) -> list:  # type: ignore[type-arg]
        out = []
        for i in range(0, len(messages), 32):
            chunk = messages[i : i + 32]
            ids, mask = pre.batch(chunk)
            assert ids.shape[1] == mask.sum(1).max()  # padded to the batch's longest message
            logits, emb = sess.run(["logits", "embedding"], {"input_ids": ids, "attention_mask": mask})
            out.extend(post(chunk, logits, emb))
        return out

    inside = serve(task.split.texts["test"])
    outside = serve(task.split.oos_test)
    truth = [state.intents[k] for k in task.split.labels["test"]]
    assert np.mean([r.intent == t for r, t in zip(inside, truth, strict=True)]) >= 0.97
    conf = np.array([r.confidence for r in inside + outside])
    assert roc_auc(1 - conf, np.r_[np.zeros(len(inside)), np.ones(len(outside))]) >= 0.95
    assert np.mean([r.handoff for r in outside]) >= 0.8
    assert np.mean([r.handoff for r in inside if r.intent not in state.handoff_intents]) <= 0.12
    assert all(r.reply and "{{" not in r.reply for r in inside + outside), [
        r.reply for r in inside + outside if not r.reply or "{{" in r.reply
    ][:5]

    (cancel,) = serve(["I want to cancel order 732201349959"])
    assert cancel.intent == "cancel_order" and "732201349959" in cancel.reply and not cancel.handoff


def test_evaluate_reproduces_published_metrics(
    chat_compress_run: CompressRun, capsys: pytest.CaptureFixture[str]
) -> None:
    for v in (1, 2):
        assert main(["evaluate", str(chat_compress_run.repo / MODEL / str(v))]) == 0
        assert "reproduced" in capsys.readouterr().out


def test_report_command_lists_every_candidate(
    chat_compress_run: CompressRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", MODEL, "--repo", str(chat_compress_run.repo), "--out", str(tmp_path / "p.png")]) == 0
    text = capsys.readouterr().out
    assert f"| {TARGET} |" in text and "**selected**" in text and "ms@32" in text
    assert "| flips |" in text and "Robustness ('flips' column)" in text, text


def test_published_versions_record_token_counts_intents_and_confidence(chat_compress_run: CompressRun) -> None:
    for v in list_versions(chat_compress_run.repo, MODEL):
        _, manifest = load_verified(chat_compress_run.repo, MODEL, v)
        ref = manifest.drift
        assert ref is not None, f"version {v} has no drift reference"
        kinds = {f.name: (f.role, f.kind) for f in ref.features}
        assert kinds == {
            "message_tokens": ("input", "numeric"),
            "intent": ("output", "categorical"),
            "confidence": ("output", "numeric"),
        }, kinds
        intent = next(f for f in ref.features if f.name == "intent")
        assert len(intent.values) >= 5 and intent.proportions[-1] == 0.0, intent


def test_published_versions_carry_their_robustness_result(chat_compress_run: CompressRun) -> None:
    versions = list_versions(chat_compress_run.repo, MODEL)
    expect_robustness(chat_compress_run.repo, MODEL, versions, set(TEXT_KINDS))
