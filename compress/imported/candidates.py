"""Candidates of an imported ONNX graph: the project's graph-level steps, each applied only where the graph allows.

The model-level steps of the project's own tasks (pruning, embedding transforms) need the model's trainer, which
an imported file does not come with, so only graph-level steps run here: dynamic and static INT8 (with the
per-layer FP32 fallback), weight-only INT8, and FP16, plus one graph pass of ours, ``fused_gathers``
(``compress/imported/fuse.py``), alone or before any of those. A step that cannot apply (no MatMul/Gemm layers in
a tree ensemble, an opset too old, FP16 kernels ORT's CPU provider lacks, no per-field lookups to fuse) is
recorded as ``skipped`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from app.manifest import TensorSpec
from app.tasks.ctr.vocab import VocabFeaturizer
from compress.candidates import DYNAMIC_STEPS, GRAPH_STEPS, WEIGHT_ONLY_STEPS, Builder, Candidate
from compress.config import RobustnessSection
from compress.errors import CompressError, ConfigError
from compress.evaluate import predict, session
from compress.imported.config import ImportConfig
from compress.imported.data import Rows
from compress.imported.metrics import get_metric
from compress.robustness.flips import RobustnessSet
from compress.weight_only import MIN_ELEMENTS

Feeds = dict[str, np.ndarray]
# dynamic INT8 layers, then the remaining large FP32 weights (embedding tables, row-wise) stored INT8: the MatMul
# steps alone leave the tables, most of a CTR model's bytes, in FP32
COMBINED = {"int8_dynamic_s8+int8_weights": "int8_dynamic_s8", "int8_dynamic_u8+int8_weights": "int8_dynamic_u8"}
# a graph pass of ours run first (compress/imported/fuse.py), alone or followed by any other candidate's steps
FUSED = "fused_gathers"
EXTRA_STEPS = ("fp16", "pruned", *COMBINED)
PRUNING_REASON = (
    "structured pruning needs the training loop (channels are removed, then the model is fine-tuned); "
    "an imported graph comes without its trainer"
)
# lowest default-domain opset each step's ONNX ops need: QuantizeLinear/DequantizeLinear (10), with a per-channel
# ``axis`` (13); the weight-only DequantizeLinear is per channel too
INT_TYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32})
MIN_OPSET = {"dynamic": 10, "qdq": 10, "qdq_per_channel": 13, "weights": 13}


@dataclass(frozen=True)
class GraphFacts:
    """What decides which steps apply: the opset, the quantizable layers and the FP32 weights."""

    opset: int
    matmuls: int
    weight_matrices: int
    fp32_weights: int
    id_casts: int
    ops: tuple[str, ...]

    @classmethod
    def of(cls, path: Path) -> GraphFacts:
        model = onnx.load(str(path))
        g = model.graph
        inits = {i.name: i for i in g.initializer}
        default = [n for n in g.node if n.domain in ("", "ai.onnx")]
        used = {name for n in default for name in n.input}
        fp32 = [i for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT and i.name in used]
        return cls(
            opset=next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0),
            matmuls=sum(1 for n in default if n.op_type == "MatMul" and any(x in inits for x in n.input)),
            weight_matrices=sum(1 for i in fp32 if len(i.dims) == 2 and int(np.prod(i.dims)) >= MIN_ELEMENTS),
            fp32_weights=sum(int(np.prod(i.dims)) for i in fp32),
            id_casts=_float_to_int_casts(model),
            ops=tuple(sorted({n.op_type for n in g.node})),
        )

    def skip_reason(self, step: str, per_channel: bool) -> str | None:
        """Why ``step`` cannot apply to this graph, or None when it can."""
        if step == "pruned":
            return PRUNING_REASON
        if step in DYNAMIC_STEPS or step == "int8_qdq":
            if not self.matmuls:
                return (
                    "no MatMul/Gemm layer with constant weights (graph ops: "
                    f"{', '.join(self.ops)}): INT8 layer quantization does not apply"
                )
            need = MIN_OPSET["dynamic" if step in DYNAMIC_STEPS else "qdq_per_channel" if per_channel else "qdq"]
            if self.opset < need:
                return f"opset {self.opset} is too old: {step} needs opset >= {need} (re-export with a newer opset)"
        if step in WEIGHT_ONLY_STEPS:
            if not self.weight_matrices:
                return f"no 2-D FP32 weight with >= {MIN_ELEMENTS} elements: nothing for weight-only INT8 to store"
            if self.opset < MIN_OPSET["weights"]:
                return f"opset {self.opset} is too old: weight-only INT8 needs opset >= {MIN_OPSET['weights']}"
        if step == "fp16" and not self.fp32_weights:
            return "no FP32 weights in standard ONNX operators (e.g. only ai.onnx.ml trees): nothing to halve"
        if step == "fp16" and self.id_casts:
            return (
                f"the graph casts float values to integer ids ({self.id_casts} Cast nodes, e.g. embedding lookups "
                "fed by a float input): FP16 holds integers exactly only up to 2048"
            )
        return None


def _float_to_int_casts(model: onnx.ModelProto) -> int:
    """Cast nodes turning a float tensor into integers: ids that travel as floats (FP16 would round them)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference fails on some custom domains: then no cast is known to be one
        return 0
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    return sum(
        1
        for n in g.node
        if n.op_type == "Cast"
        and types.get(n.input[0]) in floats
        and any(a.name == "to" and a.i in INT_TYPES for a in n.attribute)
    )


class ImportedTask:
    """The task adapter the generic ``Builder`` calls: held-out feeds, the metric, calibration batches."""

    def __init__(
        self,
        cfg: ImportConfig,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        output: str,
        held: Rows,
        cal: Rows,
        vocab: VocabFeaturizer | None = None,
    ) -> None:
        self.cfg, self.inputs, self.outputs, self.output = cfg, inputs, outputs, output
        self.held, self.cal, self.vocab = held, cal, vocab
        self.metric = get_metric(cfg.gate.metric)
        self.fp32: Any = None

    def torch_transforms(self) -> dict[str, Callable[[Any], tuple[Any, dict[str, Any]]]]:
        return {}

    def eval_feeds(self, split: str) -> Feeds:
        return self.held.feeds

    def metrics(self, outputs: np.ndarray, split: str) -> dict[str, float]:
        return {self.metric.name: self.metric(outputs, self.held.labels, self.held.groups)}

    def robustness_set(self, r: RobustnessSection) -> RobustnessSet | str:
        """Perturbed held-out rows: raw fields through the vocabulary, else the float tensors (``robustness``)."""
        from compress.imported.robustness import robustness_set

        spec = next(t for t in self.outputs if t.name == self.output)
        return robustness_set(self.held, self.inputs, spec, r, self.vocab, classes=self.metric.name == "accuracy")

    def calibration(self) -> Callable[[], Iterator[Feeds]]:
        q = self.cfg.quantize
        n = min(q.calibration_rows, len(self.cal))

        def batches() -> Iterator[Feeds]:
            for i in range(0, n, q.calibration_batch):
                yield {k: v[i : min(i + q.calibration_batch, n)] for k, v in self.cal.feeds.items()}

        return batches


def check_names(names: list[str]) -> None:
    """Fail on a typo before any work: imported candidates are single graph-level steps."""
    known = (*GRAPH_STEPS, *EXTRA_STEPS)
    bad = [n for n in names if n != "fp32" and n != FUSED and n.removeprefix(f"{FUSED}+") not in known]
    if bad:
        raise ConfigError(
            f"candidates {bad}: an imported model takes one of {['fp32', FUSED, *known]}, or {FUSED}+ any of those"
        )


class ImportBuilder(Builder):
    """``Builder`` over a given FP32 graph instead of a torch export; adds FP16 and the applicability checks."""

    def __init__(self, cfg: ImportConfig, task: ImportedTask, workdir: Path, source: Path) -> None:
        # the generic Builder reads only [quantize], [gate] (rules, fallback) and [latency], which ImportConfig shares
        super().__init__(cfg, task, workdir)  # type: ignore[arg-type]
        self.itask, self.source = task, source
        self.facts = GraphFacts.of(source)
        self._fused: tuple[Path | None, dict[str, Any]] | None = None

    def export(self, steps: list[str]) -> tuple[Path, dict[str, Any]]:
        if steps:
            raise ConfigError(f"model-level steps {steps} need the model's trainer; an imported graph has none")
        return self.source, {}

    def evaluate(self, path: Path) -> dict[str, float]:
        out = predict(session(path, threads=2), self.test_feeds, self.itask.output)
        return self.itask.metrics(out, "test")

    def build(self, name: str) -> Candidate:
        if name == FUSED or name.startswith(f"{FUSED}+"):
            return self._fused_build(name)
        per_channel = self.cfg.quantize.per_channel
        steps = name.split("+") if name in COMBINED else [name]
        reasons = [] if name == "fp32" else [r for s in steps if (r := self.facts.skip_reason(s, per_channel))]
        if reasons:
            return Candidate(name, status="skipped", error="; ".join(reasons))
        if name == "fp16":
            return self._fp16()
        if name in COMBINED:
            return self._combined(name)
        return super().build(name)

    def _fused_build(self, name: str) -> Candidate:
        """``fused_gathers`` (FP32, the per-field lookups fused) or ``fused_gathers+X``: X built on the fused graph
        by a builder over it, gated against the imported FP32 reference like every candidate."""
        from compress.imported.fuse import fuse_field_gathers

        if self._fused is None:
            dst = self.workdir / f"{FUSED}.onnx"
            notes = fuse_field_gathers(self.source, dst)
            self._fused = (dst if notes["lookup_concats"] else None, notes)
        fused, notes = self._fused
        if fused is None:
            reason = (
                "no Concat of per-field embedding lookups (Gather(table, Cast(Slice(input, column)))) in the graph: "
                "nothing to fuse"
            )
            return Candidate(name, status="skipped", error=reason)
        rest = name.removeprefix(FUSED).removeprefix("+")
        if not rest:
            cand = Candidate(name, recipe={"steps": [FUSED], FUSED: notes})
            cand.metrics = self.evaluate(fused)
            self._gate(cand, None, self.source, fused)
            cand.path, cand.bytes = fused, fused.stat().st_size
            return cand
        (self.workdir / FUSED).mkdir(exist_ok=True)
        sub = ImportBuilder(self.cfg, self.itask, self.workdir / FUSED, fused)  # type: ignore[arg-type]
        sub.reference = self.reference
        cand = sub.build(rest)
        cand.name = name
        cand.recipe = {**cand.recipe, "steps": [FUSED, *cand.recipe.get("steps", [rest])], FUSED: notes}
        return cand

    def _combined(self, name: str) -> Candidate:
        """Dynamic INT8 layers, then weight-only INT8 for what is still FP32 (the tables); gated, no fallback."""
        from compress.weight_only import quantize_weights

        cand = Candidate(name)
        mid = self.workdir / f"{name.replace('+', '__')}.dynamic.onnx"
        dst = self.workdir / f"{name.replace('+', '__')}.onnx"
        self.graph_step(COMBINED[name], self.source, mid, [])
        cand.recipe = {"steps": name.split("+"), **quantize_weights(mid, dst)}
        cand.metrics = self.evaluate(dst)
        self._gate(cand, None, self.source, dst)
        cand.path, cand.bytes = dst, dst.stat().st_size
        return cand

    def _fp16(self) -> Candidate:
        """FP16 weights and activations (inputs/outputs stay FP32), kept only if ORT's CPU provider runs it."""
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel

        cand = Candidate("fp16")
        dst = self.workdir / "fp16.onnx"
        model = convert_float_to_float16(onnx.load(str(self.source)), keep_io_types=True)
        # the converter appends the Casts of the kept FP32 inputs after their readers: valid for ORT, not for the
        # ONNX checker (a vocabulary import's model_raw.onnx merge checks the graph)
        OnnxModel(model).topological_sort()
        onnx.save(model, str(dst))
        try:
            session(dst)
        except Exception as e:  # noqa: BLE001 - ORT reports missing kernels with several exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return Candidate("fp16", status="skipped", error=f"ONNX Runtime's CPU provider cannot run it: {first}")
        cand.recipe = {"steps": ["fp16"], "keep_io_types": True}
        cand.metrics = self.evaluate(dst)
        self._gate(cand, None, self.source, dst)
        cand.path, cand.bytes = dst, dst.stat().st_size
        return cand


def build_all(builder: ImportBuilder, names: list[str], say: Callable[[str], None]) -> list[Candidate]:
    """FP32 first (the reference; its failure stops the run), then every candidate; errors become rows."""
    out = []
    for name in ["fp32", *[n for n in names if n != "fp32"]]:
        say(name)
        try:
            out.append(builder.build(name))
        except Exception as e:  # one candidate failing (ORT raises many types) is a report row
            if name == "fp32":
                if isinstance(e, CompressError):
                    raise
                raise CompressError(f"the FP32 reference could not be built: {type(e).__name__}: {e}") from e
            out.append(Candidate(name, status="error", error=f"{type(e).__name__}: {e}"))
    return out
