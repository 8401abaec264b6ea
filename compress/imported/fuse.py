"""``fused_gathers``: one embedding lookup instead of one per field, for CTR graphs exported field by field.

Exporters of per-field embedding models (deepctr-torch, most ``nn.ModuleDict`` of ``nn.Embedding``) write, for
every categorical field, ``Slice`` (its column of the input) -> ``Cast`` (to int) -> ``Gather`` (its own table),
then ``Concat`` the per-field vectors. At small batches ONNX Runtime's time goes to those ~3 x fields kernel
launches, not to the arithmetic. This pass rewrites each such ``Concat`` as: ``Gather`` of the fields' columns
(one node), ``Cast``, ``Add`` per-field row offsets, and one ``Gather`` from the fields' tables concatenated
(``[sum V_i, D]``), reshaped when the ``Concat`` joined the vectors on the last axis. The per-field id
computation and the concatenated table are shared by every ``Concat`` that reads the same fields (DeepFM's FM,
DNN and linear parts). A ``Concat`` of single-column ``Slice`` nodes of one input (the dense features) becomes
one column ``Gather`` as well. An ``Add`` of a zero-filled ``ConstantOfShape`` that provably does not change its
other operand's shape (deepctr-torch's start of the linear logit) is dropped. Nodes left without consumers are
removed.

Exact for every id inside its field's table: the same rows are read, in the same order, by the same float ops.
An id outside its table (an error in the per-field graph) would read a row of a neighbouring field instead;
ids from a vocabulary (``--vocab``) are always inside. Like every candidate the result is gated on the held-out
rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INT_IDS: dict[int, type[np.integer[Any]]] = {TensorProto.INT64: np.int64, TensorProto.INT32: np.int32}


@dataclass(frozen=True)
class Field:
    """One per-field lookup: ``Gather(table, Cast(Slice(source, column)))``."""

    source: str
    column: int
    cast_to: int
    table: str


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.g = model.graph
        self.inits = {i.name: i for i in self.g.initializer}
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.rank2_inputs = {i.name for i in self.g.input if len(i.type.tensor_type.shape.dim) == 2}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return np.asarray(numpy_helper.to_array(self.inits[name]))
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return np.asarray(numpy_helper.to_array(a.t))
        return None

    def column_slice(self, name: str) -> tuple[str, int] | None:
        """``(source, column)`` when ``name`` is ``Slice(source, [c], [c+1], axes=[1], steps=[1])`` of a rank-2
        graph input."""
        node = self.producer.get(name)
        if node is None or node.op_type != "Slice" or len(node.input) < 4 or node.input[0] not in self.rank2_inputs:
            return None
        starts, ends, axes = (self.const(n) for n in node.input[1:4])
        steps = self.const(node.input[4]) if len(node.input) > 4 and node.input[4] else np.array([1])
        if any(v is None or v.size != 1 for v in (starts, ends, axes, steps)):
            return None
        start, end, axis, step = (int(v.reshape(-1)[0]) for v in (starts, ends, axes, steps))  # type: ignore[union-attr]
        if axis not in (1, -1) or step != 1 or start < 0 or end != start + 1:
            return None
        return node.input[0], start

    def field(self, name: str) -> Field | None:
        node = self.producer.get(name)
        if node is None or node.op_type != "Gather" or any(a.name == "axis" and a.i != 0 for a in node.attribute):
            return None
        table = self.inits.get(node.input[0])
        if table is None or len(table.dims) != 2 or table.data_type != TensorProto.FLOAT:
            return None
        cast = self.producer.get(node.input[1])
        to = next((a.i for a in cast.attribute if a.name == "to"), None) if cast is not None else None
        if cast is None or cast.op_type != "Cast" or to not in INT_IDS:
            return None
        col = self.column_slice(cast.input[0])
        return Field(col[0], col[1], to, table.name) if col else None


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 0)


def fuse_field_gathers(src: Path, dst: Path) -> dict[str, Any]:
    """Write ``dst`` with every per-field lookup ``Concat`` fused; returns counts for the report (all zero when
    the graph has none, and then ``dst`` is not written)."""
    model = onnx.load(str(src))
    gr = _Graph(model)
    g = gr.g
    new_inits: list[onnx.TensorProto] = []
    ids_cache: dict[tuple[Any, ...], str] = {}
    lookup_cache: dict[tuple[Any, ...], str] = {}
    replaced: dict[int, list[onnx.NodeProto]] = {}  # Concat node index -> the nodes that replace it
    stats = {"lookup_concats": 0, "fields": 0, "dense_concats": 0}

    def name(kind: str) -> str:
        return f"fused_gathers/{kind}_{len(new_inits)}"

    def columns(source: str, cols: list[int], out: list[onnx.NodeProto]) -> str:
        c = numpy_helper.from_array(np.asarray(cols, np.int64), name("columns"))
        new_inits.append(c)
        res = c.name + "/out"
        out.append(helper.make_node("Gather", [source, c.name], [res], axis=1, name=c.name))
        return res

    for idx, node in enumerate(g.node):
        if node.op_type != "Concat" or len(node.input) < 2:
            continue
        fields = [gr.field(i) for i in node.input]
        out: list[onnx.NodeProto] = []
        if all(fields):
            fs = [f for f in fields if f is not None]
            tables = [gr.inits[f.table] for f in fs]
            same = len({f.source for f in fs}) == len({f.cast_to for f in fs}) == len({t.dims[1] for t in tables}) == 1
            if not same or _axis(node) not in (1, -2, 2, -1):
                continue
            rows = [int(t.dims[0]) for t in tables]
            offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(INT_IDS[fs[0].cast_to])
            key = (fs[0].source, tuple(f.column for f in fs), fs[0].cast_to, tuple(rows))
            if key not in ids_cache:
                picked = columns(fs[0].source, [f.column for f in fs], out)
                off = numpy_helper.from_array(offsets, name("offsets"))
                new_inits.append(off)
                out.append(helper.make_node("Cast", [picked], [off.name + "/ids"], to=fs[0].cast_to))
                out.append(helper.make_node("Add", [off.name + "/ids", off.name], [off.name + "/rows"]))
                ids_cache[key] = off.name + "/rows"
            tkey = (*key, tuple(f.table for f in fs))
            if tkey not in lookup_cache:
                table = np.concatenate([numpy_helper.to_array(t) for t in tables]).astype(np.float32)
                t = numpy_helper.from_array(table, name("table"))
                new_inits.append(t)
                out.append(helper.make_node("Gather", [t.name, ids_cache[key]], [t.name + "/rows"], name=t.name))
                lookup_cache[tkey] = t.name + "/rows"
            looked_up = lookup_cache[tkey]
            if _axis(node) in (1, -2):  # [B, 1, D] pieces on the field axis: exactly the fused [B, k, D]
                out.append(helper.make_node("Identity", [looked_up], [node.output[0]]))
            else:  # on the vector axis: [B, 1, k * D], the fused rows flattened field-major
                shape = numpy_helper.from_array(np.array([0, 1, -1], np.int64), name("shape"))
                new_inits.append(shape)
                out.append(helper.make_node("Reshape", [looked_up, shape.name], [node.output[0]]))
            stats["lookup_concats"] += 1
            stats["fields"] = max(stats["fields"], len(fs))
        else:
            cols = [gr.column_slice(i) for i in node.input]
            if not all(cols) or len({c[0] for c in cols if c}) != 1 or _axis(node) not in (1, -1):
                continue
            picked = columns(cols[0][0], [c[1] for c in cols if c], out)  # type: ignore[index]
            out.append(helper.make_node("Identity", [picked], [node.output[0]]))
            stats["dense_concats"] += 1
        replaced[idx] = out

    before = len(g.node)
    if not replaced:
        return {**stats, "nodes_before": before, "nodes_after": before}
    nodes = [n for i, node in enumerate(g.node) for n in (replaced[i] if i in replaced else [node])]
    g.initializer.extend(new_inits)
    stats["zero_adds"] = _drop_zero_adds(model, nodes)
    nodes = _without_dead(nodes, {o.name for o in g.output})
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    del g.value_info[:]  # shape hints of removed values; ORT infers them again
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return {**stats, "nodes_before": before, "nodes_after": len(nodes)}


def _drop_zero_adds(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> int:
    """Rewire ``Add(x, ConstantOfShape(s, 0))`` to ``x`` where shape inference (with data propagation, so ``s``
    computed from ``Shape(input)`` is known) proves the sum has ``x``'s own shape: ``x + 0 = x`` (up to the sign
    of a zero). deepctr-torch starts its linear logit from such a zero tensor. Returns how many were removed."""
    producer = {o: n for n in nodes for o in n.output}

    def is_zeros(name: str) -> bool:
        node = producer.get(name)
        if node is None or node.op_type != "ConstantOfShape":
            return False
        value = next((numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"), np.zeros(1))
        return bool(np.all(value == 0))

    candidates = [n for n in nodes if n.op_type == "Add" and any(is_zeros(i) for i in n.input)]
    if not candidates:
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.node[:]
    probe.graph.node.extend(nodes)
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True).graph
    except Exception:  # noqa: BLE001 - inference fails on some custom domains: then nothing is proven
        return 0
    shapes: dict[str, tuple[tuple[int | str, ...], int]] = {}
    for v in [*inferred.value_info, *inferred.input, *inferred.output]:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in t.shape.dim)
        if t.HasField("shape") and "?" not in dims:
            shapes[v.name] = (dims, t.elem_type)
    outputs = {o.name for o in model.graph.output}
    removed = 0
    for add in candidates:
        x = next((i for i in add.input if not is_zeros(i)), None)
        if x is None or add.output[0] in outputs or x not in shapes or shapes.get(add.output[0]) != shapes[x]:
            continue
        for n in nodes:
            for k, name in enumerate(n.input):
                if name == add.output[0]:
                    n.input[k] = x
        removed += 1
    return removed


def _without_dead(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """Drop nodes none of whose outputs is read (repeatedly: a dead Gather leaves its Cast and Slice dead)."""
    while True:
        read = outputs | {i for n in nodes for i in n.input}
        alive = [n for n in nodes if any(o in read for o in n.output)]
        if len(alive) == len(nodes):
            return alive
        nodes = alive
