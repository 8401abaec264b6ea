"""Weight-only INT8 / INT4-embedding compression: smaller files, FP32 kernels after load, bounded error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.runtime.ort_options import (
    DEQUANTIZE_ON_LOAD,
    model_metadata,
    session_config,
    session_options,
    wants_dequantize_on_load,
)
from compress.errors import ExportError
from compress.weight_only import quantize_weights

VOCAB, DIM, OUT = 512, 64, 96


def _model(path: Path, *, opset: int = 17, extra: list[onnx.NodeProto] | None = None) -> None:
    """ids [N] -> Gather(table [VOCAB, DIM]) -> MatMul(w [DIM, OUT]) + bias -> y [N, OUT]."""
    rng = np.random.default_rng(0)
    table = rng.normal(0, 1, (VOCAB, DIM)).astype(np.float32)
    table[7] *= 40  # one loud row: a per-tensor scale would crush the others
    w = rng.normal(0, 0.2, (DIM, OUT)).astype(np.float32)
    bias = rng.normal(0, 0.1, OUT).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed"),
        helper.make_node("MatMul", ["emb", "w"], ["mm"], name="proj"),
        helper.make_node("Add", ["mm", "bias"], ["y"], name="add"),
        *(extra or []),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, OUT])],
        [numpy_helper.from_array(a, n) for a, n in ((table, "table"), (w, "w"), (bias, "bias"))],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))


def _session(path: Path, config: dict[str, str], optimized: Path | None = None) -> ort.InferenceSession:
    so = session_options(optimized_model_path=optimized)
    for k, v in config.items():  # the entries under test, given explicitly (not read from the file)
        so.add_session_config_entry(k, v)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


IDS = {"ids": np.arange(VOCAB, dtype=np.int64)}


def test_int8_weights_are_4x_smaller_marked_and_folded_to_fp32_at_load(tmp_path: Path) -> None:
    src, dst = tmp_path / "fp32.onnx", tmp_path / "w8.onnx"
    _model(src)
    notes = quantize_weights(src, dst)
    assert notes["weight_only"] == {"tensors_int8": 2, "tensors_int4": 0, "kept_fp32": 1}  # the bias stays FP32
    assert src.stat().st_size / dst.stat().st_size > 3.5
    assert wants_dequantize_on_load(dst) and not wants_dequantize_on_load(src)
    assert model_metadata(dst) == {p.key: p.value for p in onnx.load(str(dst)).metadata_props}  # graph skipped
    assert session_config(dst) == {"session.disable_quant_qdq": "1"} and session_config(src) == {}

    folded, unfolded = tmp_path / "folded.onnx", tmp_path / "unfolded.onnx"
    got = _session(dst, session_config(dst), folded).run(None, IDS)[0]
    _session(dst, {}, unfolded).run(None, IDS)
    assert not [n for n in onnx.load(str(folded)).graph.node if n.op_type == "DequantizeLinear"]
    assert [n for n in onnx.load(str(unfolded)).graph.node if n.op_type == "DequantizeLinear"]

    ref = _session(src, {}).run(None, IDS)[0]
    err = np.abs(got - ref).max(axis=1) / np.abs(ref).max(axis=1)
    assert err.max() < 0.02  # per-row / per-column scales: the loud row does not crush the others


def test_int4_embedding_blocks_pack_the_table_and_stay_close(tmp_path: Path) -> None:
    src, w8, w4 = tmp_path / "fp32.onnx", tmp_path / "w8.onnx", tmp_path / "w4.onnx"
    _model(src)
    quantize_weights(src, w8)
    notes = quantize_weights(src, w4, int4_embedding_block=16)
    weight_only: Any = notes["weight_only"]
    assert weight_only["tensors_int4"] == 1, notes
    model = onnx.load(str(w4))
    table = next(t for t in model.graph.initializer if t.data_type == TensorProto.INT4)
    assert list(table.dims) == [VOCAB, DIM] and len(table.raw_data) == VOCAB * DIM // 2  # two values per byte
    assert next(o.version for o in model.opset_import if o.domain == "") == 21
    assert w4.stat().st_size < w8.stat().st_size * 0.8  # half the table bytes, plus a scale per 16 values
    ref = _session(src, {}).run(None, IDS)[0]
    got = _session(w4, session_config(w4)).run(None, IDS)[0]
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.98


def test_excluded_nodes_keep_fp32_weights(tmp_path: Path) -> None:
    src, dst = tmp_path / "fp32.onnx", tmp_path / "w8.onnx"
    _model(src)
    quantize_weights(src, dst, exclude=["proj"])
    inits = {t.name: t.data_type for t in onnx.load(str(dst)).graph.initializer}
    assert inits["w"] == TensorProto.FLOAT and "table_q8" in inits


def test_int4_refuses_to_raise_an_opset_whose_ops_changed_meaning(tmp_path: Path) -> None:
    src = tmp_path / "fp32.onnx"
    # ReduceMean took ``axes`` as an attribute until opset 18: raising 17 -> 21 would change the graph
    extra = [helper.make_node("ReduceMean", ["y"], ["unused"], axes=[1], name="mean")]
    _model(src, extra=extra)
    with pytest.raises(ExportError, match="ReduceMean"):  # a CompressError: that candidate fails, not the run
        quantize_weights(src, tmp_path / "w4.onnx", int4_embedding_block=16)
    quantize_weights(src, tmp_path / "w8.onnx")  # INT8 needs no opset change
    assert DEQUANTIZE_ON_LOAD in {p.key for p in onnx.load(str(tmp_path / "w8.onnx")).metadata_props}
