"""Weight-only INT8 (and block-wise INT4 embeddings): a smaller artifact that runs at FP32 speed and precision.

Every large 2-D FP32 weight is stored as INT8 with symmetric scales, one per output channel (MatMul / fused
Attention weights: per column) or per row (embedding tables), behind a ``DequantizeLinear``. The graph is marked
(``DEQUANTIZE_ON_LOAD``) so ONNX Runtime constant-folds those nodes when the session is created
(:func:`app.runtime.ort_options.session_config`): the artifact on disk and in the repository is ~4x smaller,
while the loaded session holds FP32 weights and runs FP32 kernels. Activations are never quantized, so an
output does not depend on the batch it runs in (unlike dynamic INT8), and nothing is slower on CPUs without
VNNI (unlike static QDQ). Resident memory is the FP32 model's: this compresses storage, transfer and the
repository, not RAM.

``int4_embedding_block`` stores the largest embedding table (the word table: half of a MiniLM) in signed 4-bit
blocks of that many columns, each with its own scale (``DequantizeLinear`` opset 21, ``block_size``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.runtime.ort_options import DEQUANTIZE_ON_LOAD
from compress.errors import ExportError

ROW_WISE_CONSUMERS = frozenset({"Gather", "EmbedLayerNormalization"})  # tables: one scale per row (per token)
MIN_ELEMENTS = 4096  # biases and LayerNorm vectors stay FP32: they are <1 % of the bytes and error-sensitive
INT4_OPSET = 21  # DequantizeLinear with INT4 data and block_size
# ops whose versions up to opset 21 only added element types or optional inputs/attributes with the old
# behaviour as default: a graph using only these (or unchanged ops) keeps its meaning when its opset is raised
TYPE_ONLY_CHANGES = frozenset(
    {
        "Cast",
        "CastLike",
        "Shape",
        "Size",
        "Reshape",
        "Identity",
        "Flatten",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Constant",
        "ConstantOfShape",
        "Pad",
        "DequantizeLinear",
        "QuantizeLinear",
        "Equal",
    }
)


def _symmetric(a: np.ndarray, qmax: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantize ``a`` with one scale per slice along ``axis`` (|max| -> qmax; an all-zero slice gets scale 1)."""
    amax = np.abs(a).max(axis=tuple(i for i in range(a.ndim) if i != axis), keepdims=True)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    q = np.clip(np.rint(a / scale), -qmax, qmax).astype(np.int8)
    return q, scale.reshape(-1)


def _pack_int4(q: np.ndarray) -> bytes:
    """ONNX INT4 raw layout: two values per byte, the first in the low nibble."""
    nib = (q.reshape(-1).astype(np.int16) & 0xF).astype(np.uint8)
    if nib.size % 2:
        nib = np.append(nib, np.uint8(0))
    return (nib[0::2] | (nib[1::2] << 4)).tobytes()


def _int4_blocks(name: str, a: np.ndarray, block: int) -> tuple[list[TensorProto], onnx.NodeProto]:
    rows, cols = a.shape
    if cols % block:
        raise ExportError(f"{name}: {cols} columns are not a multiple of the INT4 block size {block}")
    blocks = a.reshape(rows, cols // block, block)
    amax = np.abs(blocks).max(axis=2)
    scale = np.where(amax > 0, amax / 7, 1.0).astype(np.float32)
    q = np.clip(np.rint(blocks / scale[:, :, None]), -7, 7).astype(np.int8).reshape(rows, cols)
    data = helper.make_tensor(f"{name}_q4", TensorProto.INT4, [rows, cols], _pack_int4(q), raw=True)
    node = helper.make_node(
        "DequantizeLinear", [data.name, f"{name}_scale"], [name], axis=1, block_size=block, name=f"{name}_dq"
    )
    return [data, numpy_helper.from_array(scale, f"{name}_scale")], node


def quantize_weights(
    src: Path, dst: Path, *, exclude: list[str] | None = None, int4_embedding_block: int | None = None
) -> dict[str, object]:
    """Write ``dst``: ``src`` with its large FP32 weights stored INT8 (or INT4 blocks), dequantized at load.

    ``exclude`` names nodes whose weights stay FP32 (the gate's fallback). Returns recipe notes for the report.
    """
    model = onnx.load(str(src))
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    skip = set(exclude or [])
    tables = {  # name -> element count
        t.name: int(np.prod(t.dims))
        for t in graph.initializer
        if any(n.op_type in ROW_WISE_CONSUMERS for n in consumers.get(t.name, []))
    }
    largest = max(tables, key=tables.__getitem__, default=None)
    kept, dq_nodes, counts = [], [], {"int8": 0, "int4": 0, "fp32": 0}
    for init in graph.initializer:
        users = consumers.get(init.name, [])
        if (
            init.data_type != TensorProto.FLOAT
            or len(init.dims) != 2
            or int(np.prod(init.dims)) < MIN_ELEMENTS
            or not users
            or any(n.name in skip for n in users)
        ):
            kept.append(init)
            counts["fp32"] += 1
            continue
        a = numpy_helper.to_array(init)
        if init.name == largest and int4_embedding_block:
            tensors, node = _int4_blocks(init.name, a, int4_embedding_block)
            counts["int4"] += 1
        else:
            axis = 0 if init.name in tables else 1
            q, scale = _symmetric(a, 127, axis)
            tensors = [
                numpy_helper.from_array(q, f"{init.name}_q8"),
                numpy_helper.from_array(scale, f"{init.name}_scale"),
            ]
            node = helper.make_node(
                "DequantizeLinear", [tensors[0].name, tensors[1].name], [init.name], axis=axis, name=f"{init.name}_dq"
            )
            counts["int8"] += 1
        kept.extend(tensors)
        dq_nodes.append(node)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*dq_nodes, *nodes])
    if counts["int4"]:
        _raise_opset(model, INT4_OPSET)
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, DEQUANTIZE_ON_LOAD: "1"})
    onnx.checker.check_model(model, full_check=False)
    onnx.save(model, str(dst))
    return {
        "weight_only": {"tensors_int8": counts["int8"], "tensors_int4": counts["int4"], "kept_fp32": counts["fp32"]}
    }


def _raise_opset(model: onnx.ModelProto, target: int) -> None:
    """Raise the default-domain opset to ``target``, refusing when an op used by the graph changed meaning."""
    opset = next(o for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset.version >= target:
        return
    changed = sorted(
        {
            n.op_type
            for n in model.graph.node
            if n.domain in ("", "ai.onnx")
            and n.op_type not in TYPE_ONLY_CHANGES
            and onnx.defs.get_schema(n.op_type, opset.version).since_version
            != onnx.defs.get_schema(n.op_type, target).since_version
        }
    )
    if changed:
        raise ExportError(f"INT4 needs opset {target}; these ops changed since opset {opset.version}: {changed}")
    opset.version = target
