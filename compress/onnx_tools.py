"""ONNX export from torch, graph normalisation, ORT offline optimisation and schema checks."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from app.manifest import TensorSpec
from compress.errors import ExportError

OPSET = 17
# torch 2.9+ deprecates the TorchScript exporter (``dynamo=False``) with these two DeprecationWarnings. It stays
# pinned here, and only these two messages are silenced around the one export call, because the dynamo exporter,
# measured on torch 2.13 / onnxscript: (1) exports the MiniLM encoder into a graph ONNX Runtime refuses to load
# ("Duplicate definition of name (embedding)": a weight and the ``embedding`` output share the name), so the
# ORT transformer optimizer's BERT fusions (6 Attention, 12 SkipLayerNormalization) cannot run; (2) is 2-10x
# slower per export (DeepFM 2.8 s vs 0.25 s; MiniLM 7.3 s vs 3.2 s), and there are 4-9 exports per run; (3)
# emits its own FutureWarning/UserWarnings and forces opset 18 with a down-conversion. Revisit when moving to
# opset 18+ and the encoder's output can be renamed (tracked in docs/compression.md, "Export").
LEGACY_EXPORTER_WARNINGS = (
    r"You are using the legacy TorchScript-based ONNX export",
    r"The feature will be removed\. Please remove usage of this function",
)
_ONNX_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.BOOL: "BOOL",
}


def export_torch(
    model: Any, example: dict[str, np.ndarray], inputs: list[TensorSpec], outputs: list[TensorSpec], path: Path
) -> None:
    """Export with a dynamic axis wherever the declared shape has -1 (TorchScript exporter, pinned opset: see
    ``LEGACY_EXPORTER_WARNINGS`` for why it is not the dynamo exporter).

    Axis 0 is named ``batch`` and axis ``i`` ``axis{i}`` in every tensor, so e.g. ``input_ids`` and
    ``attention_mask`` share one sequence-length symbol.
    """
    import torch

    names_in = [t.name for t in inputs]
    names_out = [t.name for t in outputs]
    args = tuple(torch.from_numpy(example[n]) for n in names_in)
    axes = {
        t.name: {i: ("batch" if i == 0 else f"axis{i}") for i, d in enumerate(t.shape) if d == -1 or i == 0}
        for t in [*inputs, *outputs]
    }
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            for message in LEGACY_EXPORTER_WARNINGS:  # narrow: these two texts only; see LEGACY_EXPORTER_WARNINGS
                warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
            torch.onnx.export(
                model,
                args,
                str(path),
                input_names=names_in,
                output_names=names_out,
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as e:  # the exporter raises many types; surface one clear error
        raise ExportError(f"torch.onnx.export failed: {e}") from e
    onnx.checker.check_model(str(path))
    gemm_to_matmul(path)


def gemm_to_matmul(path: Path) -> None:
    """Rewrite ``Gemm(A, B, C)`` as ``MatMul(A, B') + C`` in place.

    ORT's dynamic (integer-ops) quantizer handles MatMul but not Gemm; one canonical form lets every quantizer
    and the sensitivity analysis see the same layer names.
    """
    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    new_nodes = []
    transposed: set[str] = set()
    for node in g.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if (
            node.op_type != "Gemm"
            or attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
            or node.input[1] not in inits
        ):
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            w = np.ascontiguousarray(w.T)
            transposed.add(node.input[1])
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(w, node.input[1]))
        mm_out = node.output[0] + "_mm" if len(node.input) > 2 else node.output[0]
        new_nodes.append(
            onnx.helper.make_node("MatMul", [node.input[0], node.input[1]], [mm_out], name=node.name + "_MatMul")
        )
        if len(node.input) > 2:
            new_nodes.append(
                onnx.helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=node.name + "_Add")
            )
    del g.node[:]
    g.node.extend(new_nodes)
    # shape hints of the transposed weights are stale now (the dynamo exporter writes hints for initializers too)
    kept = [v for v in g.value_info if v.name not in transposed]
    del g.value_info[:]
    g.value_info.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def optimize(src: Path, dst: Path) -> None:
    """ORT offline graph optimisation at the *basic* level: constant folding and redundant-node removal.

    Basic-level rewrites are provider-independent, so the file stays loadable by CPU, CUDA and TensorRT
    providers; hardware-specific fusions are applied by ORT at load time.
    """
    from app.runtime.ort_options import cpu_session

    # model_path=None: the file keeps its DequantizeLinear nodes (folding belongs to the server's load)
    cpu_session(src, model_path=None, optimization="basic", optimized_model_path=dst)


def tensor_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs as the file declares them (symbolic dims become -1)."""
    model = onnx.load(str(path), load_external_data=False)

    def spec(vi: onnx.ValueInfoProto) -> TensorSpec:
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        dtype: Any = _ONNX_DTYPES.get(int(t.elem_type), "BYTES")
        return TensorSpec(name=vi.name, dtype=dtype, shape=dims)

    init = {i.name for i in model.graph.initializer}
    return [spec(v) for v in model.graph.input if v.name not in init], [spec(v) for v in model.graph.output]


def check_schema(path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
    """Raise ExportError unless the file's inputs/outputs match the declared schema exactly."""
    got_in, got_out = tensor_specs(path)
    for kind, want, got in (("inputs", inputs, got_in), ("outputs", outputs, got_out)):
        w = [(t.name, t.dtype, t.shape) for t in want]
        g = [(t.name, t.dtype, t.shape) for t in got]
        if w != g:
            raise ExportError(f"{path.name}: model {kind} {g} do not match the declared schema {w}")


def quantizable_nodes(path: Path, op_types: tuple[str, ...] = ("MatMul",)) -> list[str]:
    """Names of nodes the INT8 quantizers will touch; these are the units of the sensitivity analysis."""
    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in op_types]
