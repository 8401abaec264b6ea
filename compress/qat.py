"""Quantization-aware training (QAT) candidates: fine-tune with fake quantization, export explicit Q/DQ ONNX.

Post-training static INT8 (``int8_qdq``) rounds weights and activations the model never saw during training;
where that costs accuracy, a short fine-tune with the rounding simulated in the forward pass usually wins it
back. The fake quantization is PyTorch's own (``torch.ao.quantization``: ``QuantWrapper`` + ``prepare_qat`` swap
every ``nn.Linear`` for its QAT twin with a per-channel symmetric INT8 weight quantizer, and quantize its input
and output per tensor, symmetric), so nothing here rounds by hand. The TorchScript exporter writes each fake
quantizer as ``QuantizeLinear -> DequantizeLinear``; ORT's basic optimisation folds the weight quantizers into
INT8 initializers. The result is the S8S8 QDQ form ORT runs with integer kernels and TensorRT compiles to INT8,
with the scales learned in training instead of calibrated afterwards.

Only the fine-tuning loop is task-specific (the task's ``qat_finetune`` hook: the task's own loss on a subsample
of its training rows, ``[qat]`` epochs).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.manifest import TensorSpec
from compress.config import QatSection
from compress.errors import ConfigError, ExportError

Feeds = dict[str, np.ndarray]
# torch.ao's observers warn that their reduce_range default will change; the range here is explicit
_OBSERVER_WARNINGS = (r".*reduce_range.*", r".*torch\.ao\.quantization is deprecated.*")


def qconfig(per_channel: bool) -> Any:
    """Symmetric signed INT8 for activations (per tensor) and weights (per output channel, or per tensor):
    zero points are 0, the form TensorRT accepts and ORT runs as S8S8 (the range is -128..127: the only signed
    range the ONNX exporter writes as QuantizeLinear)."""
    import torch
    from torch.ao.quantization import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        QConfig,
    )

    act = FakeQuantize.with_args(  # type: ignore[no-untyped-call]
        observer=MovingAverageMinMaxObserver,
        quant_min=-128,
        quant_max=127,
        dtype=torch.qint8,
        qscheme=torch.per_tensor_symmetric,
    )
    if per_channel:
        weight = FakeQuantize.with_args(  # type: ignore[no-untyped-call]
            observer=MovingAveragePerChannelMinMaxObserver,
            quant_min=-128,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric,
            ch_axis=0,
        )
    else:
        weight = FakeQuantize.with_args(  # type: ignore[no-untyped-call]
            observer=MovingAverageMinMaxObserver,
            quant_min=-128,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_tensor_symmetric,
        )
    return QConfig(activation=act, weight=weight)  # type: ignore[no-untyped-call]


def prepare(model: Any, per_channel: bool = True) -> tuple[Any, list[str]]:
    """A copy of ``model`` with every ``nn.Linear`` fake-quantized (input, weight, output); returns the names of
    the wrapped layers. The copy is in training mode, its observers on."""
    from torch import nn
    from torch.ao.quantization import QuantWrapper, prepare_qat

    m = copy.deepcopy(model)
    qc = qconfig(per_channel)
    wrapped: list[str] = []

    def wrap(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                w = QuantWrapper(child)
                w.qconfig = qc
                setattr(parent, name, w)
                wrapped.append(prefix + name)
            else:
                wrap(child, f"{prefix}{name}.")

    wrap(m, "")
    if not wrapped:
        raise ConfigError("candidate step int8_qat: the model has no nn.Linear layer to quantize")
    m.train()
    with warnings.catch_warnings():
        for message in _OBSERVER_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        prepare_qat(m, inplace=True)  # type: ignore[no-untyped-call]
    return m, wrapped


def freeze(model: Any) -> None:
    """Stop the observers (scales are final) and switch to inference: the export writes these scales."""
    from torch.ao.quantization import disable_observer

    model.apply(disable_observer)
    model.eval()


def build(
    model: Any,
    finetune: Callable[[Any], dict[str, Any]],
    cfg: QatSection,
    example: Feeds,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    raw: Path,
    dst: Path,
    predict: Callable[[Path, Feeds], np.ndarray],
) -> dict[str, Any]:
    """Fake-quantize ``model``, fine-tune it with ``finetune``, export Q/DQ ONNX to ``dst``; returns recipe notes.

    ``predict`` runs an ONNX file on feeds (the task's own prediction path): the exported graph must agree
    with the fake-quantized torch model within ``cfg.parity_tolerance`` (INT8 kernels and the fake quantizer may
    round a value at a step boundary differently; a wrong export is off by far more).
    """
    import torch

    from compress.onnx_tools import export_torch, optimize

    qmodel, layers = prepare(model, cfg.per_channel)
    with warnings.catch_warnings():
        for message in _OBSERVER_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        notes = finetune(qmodel)
    freeze(qmodel)
    with warnings.catch_warnings():  # FakeQuantize branches on its enabled flags: constant once frozen
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
        export_torch(qmodel, example, inputs, outputs, raw)
    optimize(raw, dst)  # folds Q(weight) into INT8 initializers; DequantizeLinear nodes stay
    counts = qdq_counts(dst)
    rows = {k: v[:256] for k, v in example.items()}
    with torch.no_grad():
        out = qmodel(*(torch.from_numpy(rows[t.name]) for t in inputs))
    ref = (out[0] if isinstance(out, tuple) else out).numpy().reshape(-1)
    got = predict(dst, rows).reshape(-1)
    diff = float(np.max(np.abs(got - ref)))
    if diff > cfg.parity_tolerance:
        raise ExportError(
            f"{dst.name}: QDQ ONNX output differs from the fake-quantized torch model by {diff:.2e} "
            f"(> [qat].parity_tolerance {cfg.parity_tolerance:g})"
        )
    return {
        "qat": {
            "tool": "torch.ao.quantization (QuantWrapper + prepare_qat), exported Q/DQ",
            "activations": "int8 per tensor, symmetric",
            "weights": f"int8 {'per channel' if cfg.per_channel else 'per tensor'}, symmetric",
            "layers": len(layers),
            "epochs": cfg.epochs,
            "lr": cfg.lr,
            "max_rows": cfg.max_rows,
            "int8_weights": counts["int8_initializers"],
            "dequantize_nodes": counts["DequantizeLinear"],
            "torch_onnx_max_diff": round(diff, 6),
            **notes,
        }
    }


def qdq_counts(path: Path) -> dict[str, int]:
    """Q/DQ nodes and INT8 initializers of a graph (a QAT export that lost them is not INT8)."""
    import onnx

    g = onnx.load(str(path)).graph
    ops = [n.op_type for n in g.node]
    return {
        "QuantizeLinear": ops.count("QuantizeLinear"),
        "DequantizeLinear": ops.count("DequantizeLinear"),
        "int8_initializers": sum(  # weight matrices, not the scalar zero points
            1 for i in g.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2
        ),
    }


def subsample(n: int, max_rows: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded subsample of at most ``max_rows`` of ``n`` rows (all rows if fewer)."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
