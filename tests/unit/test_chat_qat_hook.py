"""The chat task's qat_finetune hook on a tiny MiniLM-shaped encoder: it trains the fake-quantized model towards
the teacher's outputs and reports its budget."""

from __future__ import annotations

import numpy as np
import torch

from compress.chat.config import ChatConfig
from compress.chat.task import ChatTask
from compress.config import PROJECT_ROOT, load_config
from compress.minilm.model import Encoder
from compress.qat import prepare


def _task(rows: int, max_rows: int, epochs: int, batch_size: int) -> ChatTask:
    cfg = load_config(PROJECT_ROOT / "compress" / "configs" / "chatbot.toml")
    assert isinstance(cfg, ChatConfig)
    raw = cfg.model_dump(mode="json")
    raw["qat"] = {"epochs": epochs, "max_rows": max_rows, "lr": 1e-3}
    raw["train"]["threads"] = 1  # one thread: no spinning on a busy shared CPU
    raw["distill"]["batch_size"] = batch_size
    task = ChatTask(ChatConfig.model_validate(raw))
    rng = np.random.default_rng(0)
    task.seqs = {
        "train": [list(rng.integers(1, 50, int(rng.integers(3, 9)))) for _ in range(rows)],
    }
    emb = rng.standard_normal((rows, 384)).astype(np.float32)
    task.teacher_emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    task.teacher_logits = rng.standard_normal((rows, 4)).astype(np.float32)
    return task


def test_qat_hook_fine_tunes_on_a_capped_subsample_with_a_constant_lr() -> None:
    torch.manual_seed(0)
    qmodel, layers = prepare(Encoder(50, 1, 4, max_pos=16))
    assert len(layers) == 7, layers  # 6 per layer + the head
    before = [p.detach().clone() for p in qmodel.parameters()]
    task = _task(rows=40, max_rows=32, epochs=2, batch_size=16)
    notes = task.qat_finetune(qmodel)
    assert notes["train_rows"] == 32, notes
    assert len(notes["loss"]) == 2 and all(np.isfinite(notes["loss"])), notes
    assert notes["objective"] == "distillation to the FP32 teacher", notes
    moved = sum(not torch.equal(a, b) for a, b in zip(before, qmodel.parameters(), strict=True))
    assert moved > 0, "the fine-tune changed no weight"
    scales = [m.scale for m in qmodel.modules() if type(m).__name__ == "FakeQuantize"]
    untouched = sum(torch.equal(x, torch.ones_like(x)) for x in scales)  # FakeQuantize starts at scale 1
    assert len(scales) >= 14 and untouched == 0, f"{untouched} of {len(scales)} fake quantizers saw no data"


def test_qat_hook_runs_with_fewer_steps_than_a_one_cycle_schedule_needs() -> None:
    """10 steps of one-cycle with 10 % warm-up divide by zero in torch (the CI-sized [qat] max_rows = 320 at
    batch 32): the QAT fine-tune uses a constant lr."""
    torch.manual_seed(0)
    qmodel, _ = prepare(Encoder(50, 1, 4, max_pos=16))
    notes = _task(rows=40, max_rows=40, epochs=1, batch_size=4).qat_finetune(qmodel)
    assert notes["train_rows"] == 40 and len(notes["loss"]) == 1, notes
