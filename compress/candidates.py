"""Building and measuring one compression candidate: model transforms -> ONNX -> INT8 -> metrics and gate.

A candidate name is ``+``-joined steps: model-level transforms of the task (e.g. ``pruned``, ``emb_int8``)
followed by at most one graph-level step (``int8_dynamic_u8``, ``int8_dynamic_s8``, ``int8_qdq``, weight-only
``int8_weights`` / ``int8_weights_int4emb``); ``fp32``
is the optimised FP32 export every other candidate is gated against.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.manifest import TensorSpec
from compress.config import CompressConfig
from compress.errors import ConfigError, ExportError
from compress.evaluate import latency_stats, session
from compress.gate import GateResult, check
from compress.onnx_tools import check_schema, export_torch, quantizable_nodes
from compress.quantize import quantize_dynamic_int8, quantize_qdq_int8
from compress.sensitivity import fallback
from compress.tasks import TaskAdapter, task_latency_feeds, task_optimize_fp32, task_predict
from compress.weight_only import quantize_weights

# dynamic step -> (weight type, reduce_range); ``_rr`` = 7-bit weights, ORT's cure for AVX2-without-VNNI saturation
DYNAMIC_STEPS = {
    "int8_dynamic_u8": ("u8", False),
    "int8_dynamic_s8": ("s8", False),
    "int8_dynamic_u8_rr": ("u8", True),
    "int8_dynamic_s8_rr": ("s8", True),
}
# weight-only steps -> INT4 block size of the largest embedding table (None: INT8 everywhere)
WEIGHT_ONLY_STEPS: dict[str, int | None] = {"int8_weights": None, "int8_weights_int4emb": 32}
GRAPH_STEPS = (*DYNAMIC_STEPS, "int8_qdq", "int8_qat", *WEIGHT_ONLY_STEPS)
PRECISION = {
    "int8_dynamic_u8": "int8-dynamic-u8",
    "int8_dynamic_s8": "int8-dynamic-s8",
    "int8_dynamic_u8_rr": "int8-dynamic-u8-rr",
    "int8_dynamic_s8_rr": "int8-dynamic-s8-rr",
    "int8_qdq": "int8-qdq-s8s8",
    "int8_qat": "int8-qat-qdq-s8s8",
    "int8_weights": "int8-weights",
    "int8_weights_int4emb": "int8-weights-int4-emb",
    "emb_int8": "emb-int8",
    "pruned": "pruned",
    "fused_gathers": "fused-gathers",  # imported graphs: per-field embedding lookups fused (FP32)
}


@dataclass
class Candidate:
    """One measured artifact; ``status`` is 'reference' (FP32), 'passed', 'failed' or 'error'."""

    name: str
    status: str = "error"
    path: Path | None = None
    bytes: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    latency_range: dict[str, tuple[float, float]] = field(default_factory=dict)  # per-round median min/max
    gate: GateResult | None = None
    kept_fp32: list[str] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    files: dict[str, Path] = field(default_factory=dict)
    """Extra version files by aux role (e.g. an ANN index), published beside ``model.onnx`` with their hashes."""
    io: tuple[list[TensorSpec], list[TensorSpec]] | None = None
    """The graph's own (inputs, outputs) when they differ from the task's (an ANN version's user tower)."""
    robustness: dict[str, Any] = field(default_factory=dict)
    """Flip rate under perturbations vs FP32's and the rule's verdict (``compress.robustness.measure``)."""

    @property
    def precision(self) -> str:
        return "+".join(PRECISION.get(p, p) for p in self.name.split("+"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "precision": self.precision,
            "bytes": self.bytes,
            "metrics": self.metrics,
            "latency_ms": self.latency,
            "latency_range_ms": {b: list(r) for b, r in self.latency_range.items()},
            "kept_fp32": self.kept_fp32,
            "sensitivity": self.sensitivity,
            "recipe": self.recipe,
            "error": self.error,
            "gate": None if self.gate is None else {"passed": self.gate.passed, "reason": self.gate.reason},
            "robustness": self.robustness,
        }


def parse_name(name: str, model_steps: list[str]) -> tuple[list[str], str | None]:
    """Split a candidate name into model-level steps (canonical order) and the graph-level step."""
    if name == "fp32":
        return [], None
    parts = name.split("+")
    unknown = [p for p in parts if p not in model_steps and p not in GRAPH_STEPS]
    graph = [p for p in parts if p in GRAPH_STEPS]
    if unknown or len(graph) > 1 or len(set(parts)) != len(parts):
        raise ConfigError(
            f"candidate {name!r}: steps must be from {model_steps + list(GRAPH_STEPS)}, each at most once, "
            "with at most one int8_* step"
        )
    return [s for s in model_steps if s in parts], (graph[0] if graph else None)


class Builder:
    """Builds candidates for one run, caching the exported ONNX of each model-level variant."""

    def __init__(self, cfg: CompressConfig, task: TaskAdapter, workdir: Path) -> None:
        self.cfg, self.task, self.workdir = cfg, task, workdir
        self.transforms = task.torch_transforms()
        self._exports: dict[tuple[str, ...], tuple[Path, dict[str, Any]]] = {}
        self._models: dict[tuple[str, ...], Any] = {}
        self.test_feeds = task.eval_feeds("test")
        self.reference: dict[str, float] = {}

    def export(self, steps: list[str]) -> tuple[Path, dict[str, Any]]:
        """FP32 ONNX of the model after ``steps`` (each prefix cached), checked against torch outputs."""
        key = tuple(steps)
        if key in self._exports:
            return self._exports[key]
        if steps:
            _, notes = self.export(steps[:-1])
            model, more = self.transforms[steps[-1]](self._models[key[:-1]])
            notes = {**notes, **more}
        else:
            model, notes = self.task.fp32, {}
        self._models[key] = model
        path = self.workdir / f"model-{'-'.join(steps) or 'fp32'}.raw.onnx"
        export_torch(model, self.test_feeds, self.task.inputs, self.task.outputs, path)
        check_schema(path, self.task.inputs, self.task.outputs)
        self._check_parity(model, path)
        self._exports[key] = (path, notes)
        return path, notes

    def _check_parity(self, model: Any, path: Path, rows: int = 256) -> None:
        import torch

        feeds = {k: v[:rows] for k, v in self.test_feeds.items()}
        with torch.no_grad():
            out = model(*(torch.from_numpy(feeds[t.name]) for t in self.task.inputs))
        i = int(getattr(self.task, "parity_output", 0))  # hook: e.g. top-K scores, not tie-sensitive top-K ids
        ref = (out[i] if isinstance(out, tuple) else out).numpy().reshape(-1)  # default: the evaluated output
        got = task_predict(self.task, session(path), feeds, self.task.outputs[i].name)
        diff = float(np.max(np.abs(got.reshape(-1) - ref)))
        if diff > 1e-4:
            raise ExportError(f"{path.name}: ONNX output differs from torch by {diff:.2e} (> 1e-4)")

    def evaluate(self, path: Path) -> dict[str, float]:
        out = task_predict(self.task, session(path, threads=2), self.test_feeds, self.task.outputs[0].name)
        return self.task.metrics(out, "test")

    def graph_step(self, step: str | None, src: Path, dst: Path, exclude: list[str]) -> dict[str, Any]:
        """Write ``dst`` from ``src``: FP32 optimisation (the task's, if it has one) or one INT8 step."""
        q = self.cfg.quantize
        if step is None:
            return task_optimize_fp32(self.task, src, dst)
        if step in WEIGHT_ONLY_STEPS:
            with tempfile.TemporaryDirectory() as tmp:  # fuse first (Attention, EmbedLayerNorm), then store
                fused = Path(tmp) / "fused.onnx"
                notes = task_optimize_fp32(self.task, src, fused)
                block = WEIGHT_ONLY_STEPS[step]
                return {**notes, **quantize_weights(fused, dst, exclude=exclude, int4_embedding_block=block)}
        if step in DYNAMIC_STEPS:
            weight, reduce_range = DYNAMIC_STEPS[step]
            quantize_dynamic_int8(src, dst, weight, exclude, reduce_range=reduce_range)
        else:
            quantize_qdq_int8(
                src, dst, self.task.calibration(), per_channel=q.per_channel, method=q.calibrate_method, exclude=exclude
            )
        return {}

    def build(self, name: str) -> Candidate:
        """Build, evaluate and gate (with FP32 fallback for INT8 steps) one candidate; timing comes later."""
        steps, step = parse_name(name, list(self.transforms))
        cand = Candidate(name)
        src, notes = self.export(steps)
        dst = self.workdir / f"{name.replace('+', '__')}.onnx"
        more = self._qat(steps, dst) if step == "int8_qat" else self.graph_step(step, src, dst, [])
        cand.recipe = {"steps": [*steps, *([step] if step else [])], **notes, **more}
        cand.metrics = self.evaluate(dst)
        if name == "fp32":
            self.reference = cand.metrics
            cand.status = "reference"
        else:
            self._gate(cand, step, src, dst)
        cand.path = dst
        cand.bytes = dst.stat().st_size
        return cand

    def _qat(self, steps: list[str], dst: Path) -> dict[str, Any]:
        """``int8_qat``: fake-quantized fine-tune of the model after ``steps`` (the task's ``qat_finetune``
        hook), exported as Q/DQ ONNX (``compress/qat.py``)."""
        from compress.qat import build as build_qat

        hook = getattr(self.task, "qat_finetune", None)
        if hook is None:
            raise ConfigError(f"candidate step int8_qat: task {self.cfg.model.task!r} has no qat_finetune hook")
        out = self.task.outputs[0].name
        return build_qat(
            self._models[tuple(steps)],
            hook,
            self.cfg.qat,
            self.test_feeds,
            self.task.inputs,
            self.task.outputs,
            dst.with_suffix(".raw.onnx"),
            dst,
            lambda path, feeds: task_predict(self.task, session(path), feeds, out),
        )

    def measure_latency(self, cands: list[Candidate]) -> None:
        """Time every built candidate side by side (interleaved rounds) at the configured batch sizes."""
        lat = self.cfg.latency
        built = {c.name: c for c in cands if c.path is not None and not c.latency}  # latency set: timed by its builder
        sessions = {name: session(c.path, lat.threads) for name, c in built.items()}  # type: ignore[arg-type]
        batches = task_latency_feeds(self.task, self.test_feeds, lat.batch_sizes)
        for name, table in latency_stats(sessions, batches, lat.repeats).items():
            built[name].latency = {b: s[0] for b, s in table.items()}
            built[name].latency_range = {b: (s[1], s[2]) for b, s in table.items()}

    def _gate(self, cand: Candidate, step: str | None, src: Path, dst: Path) -> None:
        rules = self.cfg.gate.rules
        cand.gate = check(cand.metrics, self.reference, rules)
        if not cand.gate.passed and step not in (None, "int8_qat") and self.cfg.gate.fallback:
            first_failure = cand.gate.reason
            if cand.recipe["steps"][:-1] and not check(self.evaluate(src), self.reference, rules).passed:
                cand.gate.reasons.append("the model-level steps alone already fail the gate; no INT8 fallback tried")
                cand.status = "failed"
                return
            layers = quantizable_nodes(src)
            res = fallback(
                layers,
                lambda d, ex: self.graph_step(step, src, d, ex),
                self.evaluate,
                self.reference,
                rules,
                self.workdir,
                dst,
                self.cfg.gate.max_fallback_layers,
            )
            if res is None:
                self.graph_step(step, src, dst, [])  # report the plain INT8 model's numbers
                cand.gate = GateResult(
                    False, cand.gate.rule, cand.gate.numbers, [first_failure, "fallback could not restore the gate"]
                )
            else:
                cand.metrics, cand.gate, cand.kept_fp32, cand.sensitivity = (
                    res.metrics,
                    res.gate,
                    res.kept_fp32,
                    res.sensitivity,
                )
                cand.recipe["fallback"] = {"first_failure": first_failure, "kept_fp32": res.kept_fp32}
        cand.status = "passed" if cand.gate.passed else "failed"
