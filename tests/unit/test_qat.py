"""A QAT fine-tune with torch.ao fake quantization exports an INT8 Q/DQ graph ORT runs, close to torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.manifest import TensorSpec
from compress.config import QatSection
from compress.evaluate import predict, session
from compress.qat import build, qdq_counts


def test_qat_build_exports_int8_qdq_that_matches_the_fake_quantized_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    y = torch.from_numpy((x[:, 0] > 0).astype(np.float32))
    steps: list[int] = []

    def finetune(m: Any) -> dict[str, Any]:
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        for _ in range(20):
            opt.zero_grad()
            loss = nn.functional.binary_cross_entropy(m(torch.from_numpy(x)).squeeze(1), y)
            loss.backward()
            opt.step()
            steps.append(1)
        return {"final_loss": float(loss.detach())}

    ins = [TensorSpec(name="x", dtype="FP32", shape=[-1, 8])]
    outs = [TensorSpec(name="p", dtype="FP32", shape=[-1, 1])]
    dst = tmp_path / "qat.onnx"
    notes = build(
        model,
        finetune,
        QatSection(),
        {"x": x},
        ins,
        outs,
        tmp_path / "raw.onnx",
        dst,
        lambda path, feeds: predict(session(path), feeds, "p"),
    )
    counts = qdq_counts(dst)
    assert len(steps) == 20, f"the fine-tune hook ran {len(steps)} steps"
    assert counts["int8_initializers"] == 2 and counts["DequantizeLinear"] >= 6, f"not an INT8 QDQ graph: {counts}"
    assert notes["qat"]["layers"] == 2 and notes["qat"]["torch_onnx_max_diff"] <= 0.05, notes
    assert isinstance(model[0], nn.Linear), "the caller's model must not be modified"
