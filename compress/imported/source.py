"""The imported ONNX file: validated, its inputs/outputs read, normalised into the project's canonical form."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from app.manifest import TensorSpec
from app.repository import sha256_file
from compress.errors import ExportError
from compress.onnx_tools import gemm_to_matmul, tensor_specs

SERVABLE = {"FP32", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL"}


@dataclass(frozen=True)
class Source:
    """The FP32 graph as given (path, sha256, producer) and its normalised copy the candidates start from."""

    path: Path
    sha256: str
    producer: str
    opset: int
    graph: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    exporter: str = ""
    """How the pipeline made the ONNX graph from a TorchScript / torch.export program; empty for an ONNX file."""

    def lineage(self) -> dict[str, object]:
        out: dict[str, object] = {"path": str(self.path), "sha256": self.sha256, "producer": self.producer}
        out["opset"] = self.opset
        if self.exporter:
            out["exported_by"] = self.exporter
        return out


def load_source(path: Path, workdir: Path) -> Source:
    """Check the file loads and every input/output is a batch-first tensor the server can carry."""
    if not path.is_file():
        raise ExportError(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - protobuf and checker errors vary; one clear line
        raise ExportError(f"{path}: not a valid ONNX model: {e}") from None
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for vi in values:
            if not vi.type.HasField("tensor_type"):
                raise ExportError(
                    f"{kind} {vi.name!r} is a {vi.type.WhichOneof('value')}, not a tensor; serve tensors only "
                    "(skl2onnx: convert with options={'zipmap': False})"
                )
    graph = workdir / "imported.raw.onnx"
    shutil.copyfile(path, graph)
    gemm_to_matmul(graph)  # one canonical layer form for every quantizer and the fallback
    inputs, outputs = tensor_specs(graph)
    for kind, specs in (("input", inputs), ("output", outputs)):
        for t in specs:
            if t.dtype not in SERVABLE:
                raise ExportError(f"{kind} {t.name!r} has an element type the server cannot carry (FP64, string)")
            if not t.shape or t.shape[0] != -1:
                raise ExportError(
                    f"{kind} {t.name!r} has shape {t.shape}: the first axis must be a variable batch axis "
                    "(export with a dynamic batch dimension, e.g. torch.onnx.export(dynamic_axes={...: {0: 'batch'}}))"
                )
    producer = f"{model.producer_name} {model.producer_version}".strip() or "unknown"
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return Source(path.resolve(), sha256_file(path), producer, opset, graph, inputs, outputs)


def evaluated_output(outputs: list[TensorSpec], name: str) -> str:
    """The output the metric reads: ``name``, or the first FP32 output."""
    if name:
        if name not in [t.name for t in outputs]:
            raise ExportError(f"output {name!r} is not among the model's outputs {[t.name for t in outputs]}")
        return name
    for t in outputs:
        if t.dtype == "FP32":
            return t.name
    raise ExportError(f"no FP32 output among {[(t.name, t.dtype) for t in outputs]}: name one with [model].output")
