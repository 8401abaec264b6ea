"""TensorRT engine builder for QDQ ONNX models, keyed by GPU compute capability and TensorRT version.

TensorRT 10+/11 networks are *strongly typed*: INT8 precision comes only from the Q/DQ nodes in the ONNX file,
so the builder gets no INT8 flag or calibrator. ``tensorrt`` and CUDA are imported lazily; without them the
build is reported as skipped (in the report and the manifest), never as an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compress.errors import EngineBuildError


@dataclass(frozen=True)
class EngineResult:
    status: str  # "built" | "skipped"
    reason: str = ""
    path: Path | None = None
    compute_capability: str | None = None
    tensorrt_version: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "status": self.status,
            "reason": self.reason,
            "path": self.path.name if self.path else None,
            "compute_capability": self.compute_capability,
            "tensorrt_version": self.tensorrt_version,
        }


def gpu_compute_capability() -> str | None:
    """'major.minor' of GPU 0, or None without torch CUDA / a GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return f"{major}.{minor}"


def engine_filename(cc: str, trt_version: str) -> str:
    """Engines are not portable across GPU architectures or TensorRT versions: both are in the name."""
    return f"model.sm{cc.replace('.', '')}.trt{trt_version}.plan"


def build_engine(onnx_path: Path, out_dir: Path, *, max_batch: int, workspace_mib: int = 1024) -> EngineResult:
    try:
        import tensorrt as trt  # optional, heavy, GPU-only: imported only here
    except ImportError:
        return EngineResult("skipped", "tensorrt is not installed (install the 'gpu' extra on a GPU host)")
    cc = gpu_compute_capability()
    if cc is None:
        return EngineResult("skipped", "no CUDA GPU is visible")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path.name}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        t = network.get_input(i)
        rest = tuple(t.shape)[1:]
        profile.set_shape(t.name, (1, *rest), (max(1, max_batch // 8), *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path.name}")
    path = out_dir / engine_filename(cc, trt.__version__)
    path.write_bytes(bytes(plan))
    return EngineResult("built", "", path, cc, trt.__version__)
