"""``fused_gathers``: per-field embedding lookups fused into one Gather (and zero additions dropped) give the same
outputs, with fewer nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compress.evaluate import session
from compress.imported.fuse import fuse_field_gathers
from tests.unit.test_import_checks import _linear

FIELDS = {0: 7, 2: 3, 3: 11}  # input column -> table rows; columns 1 and 4 are dense


def _per_field_graph(path: Path) -> Path:
    """The deepctr-torch export's shape: Slice -> Cast -> Gather per field, Concat on axis 1 (FM) and on -1 (DNN),
    and a Concat of the dense columns' Slices."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def const(name: str, value: list[int]) -> str:
        inits.append(numpy_helper.from_array(np.array(value, np.int64), name))
        return name

    one, ax = const("one", [1]), const("axis1", [1])
    looked = []
    for col, rows in [*FIELDS.items(), (1, 0), (4, 0)]:
        start, end = const(f"s{col}", [col]), const(f"e{col}", [col + 1])
        nodes.append(helper.make_node("Slice", ["x", start, end, ax, one], [f"col{col}"]))
        if rows:
            table = numpy_helper.from_array(rng.normal(size=(rows, 4)).astype(np.float32), f"table{col}")
            inits.append(table)
            nodes.append(helper.make_node("Cast", [f"col{col}"], [f"id{col}"], to=TensorProto.INT64))
            nodes.append(helper.make_node("Gather", [table.name, f"id{col}"], [f"emb{col}"]))
            looked.append(f"emb{col}")
    nodes += [
        helper.make_node("Concat", looked, ["fm"], axis=1),  # [B, 3, 4]
        helper.make_node("Concat", looked, ["dnn"], axis=-1),  # [B, 1, 12]
        helper.make_node("Concat", ["col1", "col4"], ["dense_cols"], axis=1),  # [B, 2]
        # deepctr-torch's zero-filled start of its linear logit: x + zeros of x's own shape
        helper.make_node("Shape", ["dense_cols"], ["dense_shape"]),
        helper.make_node("ConstantOfShape", ["dense_shape"], ["zeros"]),
        helper.make_node("Add", ["zeros", "dense_cols"], ["dense_sum"]),
        helper.make_node("Identity", ["dense_sum"], ["dense"]),
    ]
    graph = helper.make_graph(
        nodes,
        "per_field",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5])],
        [
            helper.make_tensor_value_info("fm", TensorProto.FLOAT, ["n", 3, 4]),
            helper.make_tensor_value_info("dnn", TensorProto.FLOAT, ["n", 1, 12]),
            helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["n", 2]),
        ],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_fused_lookups_read_the_same_rows_with_fewer_nodes(tmp_path: Path) -> None:
    src = _per_field_graph(tmp_path / "per_field.onnx")
    notes = fuse_field_gathers(src, tmp_path / "fused.onnx")
    assert notes["lookup_concats"] == 2 and notes["fields"] == 3 and notes["dense_concats"] == 1, notes
    assert notes["zero_adds"] == 1, f"the Add of a zero tensor of the same shape stays: {notes}"
    assert notes["nodes_after"] < notes["nodes_before"], notes
    ops = [n.op_type for n in onnx.load(str(tmp_path / "fused.onnx")).graph.node]
    assert ops.count("Gather") == 3 and "Slice" not in ops, f"one table lookup + two column picks, saw {ops}"
    assert "ConstantOfShape" not in ops and "Add" in ops, f"the zero Add (not the offsets Add) is gone: {ops}"
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    for col, rows in FIELDS.items():  # every id of every table, as floats (the exporter casts them)
        x[:, col] = rng.integers(0, rows, 64)
    want = session(src).run(None, {"x": x})
    got = session(tmp_path / "fused.onnx").run(None, {"x": x})
    for name, w, g in zip(("fm", "dnn", "dense"), want, got, strict=True):
        np.testing.assert_array_equal(g, w, err_msg=f"output {name} of the fused graph")


def test_a_graph_without_per_field_lookups_is_left_alone(tmp_path: Path) -> None:
    src = _linear(tmp_path / "m.onnx")
    notes = fuse_field_gathers(src, tmp_path / "fused.onnx")
    assert notes["lookup_concats"] == 0 and notes["nodes_after"] == notes["nodes_before"], notes
    assert not (tmp_path / "fused.onnx").exists(), "nothing to fuse, yet a file was written"
