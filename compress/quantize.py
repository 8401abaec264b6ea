"""INT8 quantization of ONNX graphs with ONNX Runtime: dynamic (integer ops) and static QDQ (S8S8, symmetric).

Only MatMul layers are quantized here; embedding tables are compressed separately (row-wise INT8) because a
per-tensor scale destroys rare rows. ``exclude`` keeps named layers in FP32 (the sensitivity fallback).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from compress.errors import CalibrationError

Feeds = dict[str, np.ndarray]


def _preprocess(src: Path, dst: Path) -> None:
    """ORT's recommended pre-pass (symbolic shape inference); optimisation is skipped to keep MatMul nodes.

    Symbolic inference does not know every domain's ops (``ai.onnx.ml`` ``Scaler`` in a scikit-learn graph): such
    graphs get ONNX's own shape inference instead, which is all the MatMul quantizers need. When symbolic inference
    gives up (tf2onnx graphs, for one), ORT first dumps the half-inferred graph (``sym_shape_infer_temp.onnx`` plus
    a randomly named ``.data`` file) into the working directory; those are removed, so a run writes only where it
    was told to.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    domains = {node.domain for node in onnx.load(str(src), load_external_data=False).graph.node}
    if not domains <= _SYMBOLIC_DOMAINS:
        quant_pre_process(str(src), str(dst), skip_optimization=True, skip_symbolic_shape=True)
        return
    before = set(Path.cwd().iterdir())
    try:
        quant_pre_process(str(src), str(dst), skip_optimization=True, skip_symbolic_shape=False)
    except Exception:  # noqa: BLE001 - ORT raises a bare Exception ("Incomplete symbolic shape inference")
        for path in set(Path.cwd().iterdir()) - before:
            if path.name == "sym_shape_infer_temp.onnx" or path.suffix == ".data":
                path.unlink(missing_ok=True)
        quant_pre_process(str(src), str(dst), skip_optimization=True, skip_symbolic_shape=True)


_SYMBOLIC_DOMAINS = {"", "ai.onnx", "com.microsoft"}
"""Op domains ORT's symbolic shape inference knows; a graph with any other goes straight to ONNX's inference."""


def quantize_dynamic_int8(
    src: Path, dst: Path, weight: str, exclude: list[str] | None = None, *, reduce_range: bool = False
) -> None:
    """Dynamic INT8: activations quantized per batch at run time; ``weight`` is 'u8' or 's8'.

    On AVX2 without VNNI, ORT's u8s8 kernels can saturate (vpmaddubsw), so both weight types are candidates and
    the measurements decide; ``reduce_range`` (7-bit weights) is the other documented cure for that saturation.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    wtype = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}[weight]
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        _preprocess(src, pre)
        quantize_dynamic(
            str(pre),
            str(dst),
            op_types_to_quantize=["MatMul"],
            per_channel=False,
            weight_type=wtype,
            nodes_to_exclude=exclude or [],
            reduce_range=reduce_range,
        )


class _Reader:
    """CalibrationDataReader over a generator factory: batches stream, memory stays bounded."""

    def __init__(self, make: Callable[[], Iterator[Feeds]]) -> None:
        self._it = make()

    def get_next(self) -> Feeds | None:
        return next(self._it, None)


def quantize_qdq_int8(
    src: Path,
    dst: Path,
    calibration: Callable[[], Iterator[Feeds]],
    *,
    per_channel: bool = True,
    method: str = "minmax",
    exclude: list[str] | None = None,
) -> None:
    """Static INT8 in QDQ format, signed activations and weights, symmetric scales (zero point 0).

    This is the form TensorRT 10+/11 compiles into INT8 kernels (strongly typed: precision comes from Q/DQ),
    and ORT runs it on CPU with QLinear kernels.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calib = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        _preprocess(src, pre)
        try:
            quantize_static(
                str(pre),
                str(dst),
                _Reader(calibration),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
                per_channel=per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=calib,
                nodes_to_exclude=exclude or [],
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )
        except Exception as e:
            raise CalibrationError(f"static INT8 calibration of {src.name} failed: {e}") from e
