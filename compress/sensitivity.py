"""Per-layer sensitivity and FP32 fallback for INT8 candidates that fail the gate.

For each quantizable layer, quantize *only that layer* and measure the task metrics; the layers whose solo
quantization costs the most gate margin are kept in FP32 one by one until the gate holds. This is the loop
ONNX Runtime's quantizer lacks and TensorRT/ModelOpt offer only on GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from compress.config import GateRule
from compress.gate import GateResult, check, margin
from compress.progress import Heartbeat, progress

# quantize(dst, exclude) writes an INT8 model keeping ``exclude`` in FP32
Quantizer = Callable[[Path, list[str]], object]
# evaluate(path) -> task metrics on held-out rows
Evaluator = Callable[[Path], dict[str, float]]


@dataclass
class FallbackResult:
    path: Path
    metrics: dict[str, float]
    gate: GateResult
    kept_fp32: list[str] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)


def layer_sensitivity(
    layers: list[str],
    quantize: Quantizer,
    evaluate: Evaluator,
    fp32: dict[str, float],
    rules: list[GateRule],
    workdir: Path,
) -> dict[str, float]:
    """Gate margin lost when only ``layer`` is quantized (higher = more sensitive)."""
    base = margin(fp32, fp32, rules)
    out: dict[str, float] = {}
    beat = Heartbeat("sensitivity", len(layers), unit="layer")
    for i, layer in enumerate(beat.each(progress(layers, desc="sensitivity"))):
        dst = workdir / f"solo_{i}.onnx"
        quantize(dst, [x for x in layers if x != layer])
        out[layer] = base - margin(evaluate(dst), fp32, rules)
        dst.unlink()
    return out


def fallback(
    layers: list[str],
    quantize: Quantizer,
    evaluate: Evaluator,
    fp32: dict[str, float],
    rules: list[GateRule],
    workdir: Path,
    dst: Path,
    max_layers: int | None = None,
) -> FallbackResult | None:
    """Keep the most sensitive layers in FP32, one more at a time, until the gate passes.

    Returns the first passing model (written to ``dst``), or None if even the limit of kept layers fails.
    """
    sens = layer_sensitivity(layers, quantize, evaluate, fp32, rules, workdir)
    ranked = sorted(layers, key=lambda x: sens[x], reverse=True)
    limit = len(ranked) - 1 if max_layers is None else min(max_layers, len(ranked) - 1)
    for k in Heartbeat("FP32 fallback", limit, unit="kept layer").each(range(1, limit + 1)):
        kept = ranked[:k]
        quantize(dst, kept)
        m = evaluate(dst)
        g = check(m, fp32, rules)
        if g.passed:
            return FallbackResult(dst, m, g, kept, sens)
    return None
