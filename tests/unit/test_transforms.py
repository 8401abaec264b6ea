"""Each compression transform on tiny models: pruning, row-wise INT8 embeddings, Gemm rewrite, INT8 quantizers,
and the sensitivity fallback repairing a forced gate failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from app.manifest import TensorSpec
from compress.config import GateRule
from compress.ctr.model import DeepFM
from compress.embedding_int8 import RowwiseInt8Embedding
from compress.errors import ExportError
from compress.evaluate import predict, session
from compress.metrics import roc_auc
from compress.onnx_tools import check_schema, export_torch, quantizable_nodes
from compress.prune import prune_mlp
from compress.quantize import quantize_dynamic_int8, quantize_qdq_int8
from compress.sensitivity import fallback

IN = [TensorSpec(name="x", dtype="FP32", shape=[-1, 8])]
OUT = [TensorSpec(name="y", dtype="FP32", shape=[-1, 1])]


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())


def linear(m: nn.Module, i: int) -> nn.Linear:
    """Layer ``i`` of an ``nn.Sequential`` MLP, typed as the Linear it is."""
    layer = m[i]  # type: ignore[index]
    assert isinstance(layer, nn.Linear), layer
    return layer


def feeds(n: int = 512) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).normal(size=(n, 8)).astype(np.float32)}


def test_prune_really_shrinks_matrices_and_keeps_the_important_units() -> None:
    m = mlp()
    with torch.no_grad():
        linear(m, 2).weight[:, :16] *= 0.001  # units 0-15 of the first hidden layer barely reach the next layer
    first_rows = linear(m, 0).weight.detach().clone()
    shapes = prune_mlp(m, 0.5)
    assert shapes == [(32, 16), (16, 8)]
    assert (
        linear(m, 0).weight.shape == (16, 8)
        and linear(m, 2).weight.shape == (8, 16)
        and linear(m, 4).weight.shape == (1, 8)
    )
    torch.testing.assert_close(linear(m, 0).weight, first_rows[16:])  # exactly the important units survived
    assert m(torch.from_numpy(feeds()["x"])).shape == (512, 1)


def test_prune_rejects_bad_ratio() -> None:
    with pytest.raises(ValueError, match="keep_ratio"):
        prune_mlp(mlp(), 0.0)


def test_rowwise_int8_embedding_error_is_bounded_per_row() -> None:
    torch.manual_seed(0)
    w = torch.randn(100, 17) * torch.logspace(-3, 0, 100).unsqueeze(1)  # rows of very different norms
    q = RowwiseInt8Embedding(w)
    assert q.qweight.dtype == torch.int8 and q.scale.dtype == torch.float16
    idx = torch.arange(100)
    err = (q(idx) - w).abs().amax(1)
    row_max = w.abs().amax(1)
    assert bool((err <= row_max / 127 * 0.51 + row_max * 1e-3).all())  # half a step (+fp16 scale rounding)
    assert q.qweight.numel() + 2 * q.scale.numel() < w.numel() * 4 / 3.5


def test_export_rewrites_gemm_to_matmul_and_matches_torch(tmp_path: Path) -> None:
    m = mlp()
    p = tmp_path / "m.onnx"
    export_torch(m, feeds(), IN, OUT, p)
    ops = [n.op_type for n in onnx.load(str(p)).graph.node]
    assert "Gemm" not in ops and ops.count("MatMul") == 3
    ref = m(torch.from_numpy(feeds()["x"])).detach().numpy().ravel()
    np.testing.assert_allclose(predict(session(p), feeds(), "y"), ref, atol=1e-5)


def test_schema_mismatch_is_a_clear_export_error(tmp_path: Path) -> None:
    p = tmp_path / "m.onnx"
    export_torch(mlp(), feeds(), IN, OUT, p)
    with pytest.raises(ExportError, match="outputs .* do not match the declared schema"):
        check_schema(p, IN, [TensorSpec(name="pctr", dtype="FP32", shape=[-1, 1])])


@pytest.mark.parametrize("weight", ["u8", "s8"])
def test_dynamic_int8_quantizes_every_matmul(tmp_path: Path, weight: str) -> None:
    src, dst = tmp_path / "m.onnx", tmp_path / "q.onnx"
    export_torch(mlp(), feeds(), IN, OUT, src)
    quantize_dynamic_int8(src, dst, weight)
    ops = [n.op_type for n in onnx.load(str(dst)).graph.node]
    assert ops.count("MatMulInteger") == 3 and "MatMul" not in ops
    np.testing.assert_allclose(predict(session(dst), feeds(), "y"), predict(session(src), feeds(), "y"), atol=0.05)


def test_qdq_is_signed_symmetric_per_channel(tmp_path: Path) -> None:
    src, dst = tmp_path / "m.onnx", tmp_path / "q.onnx"
    export_torch(mlp(), feeds(), IN, OUT, src)
    quantize_qdq_int8(src, dst, lambda: iter([{"x": feeds()["x"][i : i + 64]} for i in range(0, 256, 64)]))
    g = onnx.load(str(dst)).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    q_nodes = [n for n in g.node if n.op_type == "QuantizeLinear"]
    dq_nodes = [n for n in g.node if n.op_type == "DequantizeLinear"]
    assert q_nodes and dq_nodes
    for n in dq_nodes:
        zp = inits.get(n.input[2]) if len(n.input) > 2 else None
        assert zp is not None and zp.dtype == np.int8 and not zp.any()  # S8, symmetric (zero point 0)
    weights = [
        (inits[n.input[0]], inits[n.input[1]]) for n in dq_nodes if n.input[0] in inits and inits[n.input[0]].ndim == 2
    ]
    assert len(weights) == 3
    assert all(w.dtype == np.int8 and s.shape == (w.shape[1],) for w, s in weights)  # one scale per output channel
    np.testing.assert_allclose(predict(session(dst), feeds(), "y"), predict(session(src), feeds(), "y"), atol=0.05)


def test_fallback_repairs_a_forced_gate_failure(tmp_path: Path) -> None:
    """The last layer gets an outlier weight on a dead unit: FP32 outputs are unchanged, but per-tensor INT8 then
    rounds that layer's other weights to zero. The fallback must find that layer, keep it in FP32 and pass the
    gate; the other layers stay INT8."""
    m = mlp()
    with torch.no_grad():
        linear(m, 2).weight[0, :] = 0.0
        linear(m, 2).bias[0] = -1.0  # hidden unit 0 is always 0 after ReLU
        linear(m, 4).weight[0, 0] = 500.0  # outlier: scale = 500/127, typical weights (~0.2) quantize to 0
    src = tmp_path / "m.onnx"
    export_torch(m, feeds(2000), IN, OUT, src)
    f = feeds(2000)
    ref = predict(session(src), f, "y")
    labels = (ref > np.median(ref)).astype(np.int64)
    labels[::7] = 1 - labels[::7]  # noisy labels: FP32 AUC < 1, so a ratio gate is meaningful

    def evaluate(p: Path) -> dict[str, float]:
        return {"auc": roc_auc(predict(session(p), f, "y"), labels)}

    rules = [GateRule(metric="auc", kind="min_ratio", value=0.995)]
    fp32 = evaluate(src)

    def quantize(dst: Path, exclude: list[str]) -> None:
        quantize_dynamic_int8(src, dst, "u8", exclude)

    plain = tmp_path / "plain.onnx"
    quantize(plain, [])
    assert evaluate(plain)["auc"] < fp32["auc"] * 0.995  # the forced failure is real
    layers = quantizable_nodes(src)
    res = fallback(layers, quantize, evaluate, fp32, rules, tmp_path, tmp_path / "fixed.onnx")
    assert res is not None and res.gate.passed
    assert res.kept_fp32 == ["/4/Gemm_MatMul"] == [max(res.sensitivity, key=res.sensitivity.__getitem__)]
    ops = [n.op_type for n in onnx.load(str(res.path)).graph.node]
    assert ops.count("MatMulInteger") == 2 and ops.count("MatMul") == 1


def test_deepfm_int8_embedding_exports_int8_gather(tmp_path: Path) -> None:
    m = DeepFM([5, 7, 3], n_dense=2, dim=4, hidden=[8], dropout=0.0)
    m.embedding = RowwiseInt8Embedding(m.embedding.weight)  # type: ignore[union-attr,arg-type]
    f: dict[str, np.ndarray] = {
        "dense": np.zeros((4, 2), np.float32),
        "sparse": np.array([[0, 1, 2]] * 4, dtype=np.int64),
    }
    ins = [
        TensorSpec(name="dense", dtype="FP32", shape=[-1, 2]),
        TensorSpec(name="sparse", dtype="INT64", shape=[-1, 3]),
    ]
    p = tmp_path / "e.onnx"
    export_torch(m, f, ins, [TensorSpec(name="pctr", dtype="FP32", shape=[-1, 1])], p)
    g = onnx.load(str(p)).graph
    int8_tables = [i for i in g.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8_tables) == 1 and list(int8_tables[0].dims) == [15, 5]
