"""Which artifact of a version runs here, and on which engine: decided from the manifest and the host.

A TensorRT plan is chosen only when the host's GPU compute capability and TensorRT version equal the ones the plan
was built for (plans are not portable); otherwise the ONNX artifact runs on ONNX Runtime with the best provider
the host offers (TensorRT EP if enabled, then CUDA, CPU always last). The choice and its reason are logged,
labelled on metrics and reported as ``platform`` in v2 model metadata.

Host capabilities are detected lazily (no GPU library is imported unless present) and injectable for tests::

    choice = choose_runtime(manifest, HostCapabilities(("CPUExecutionProvider",)), use_tensorrt_ep=False)
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

from app.manifest import Artifact, Manifest
from app.runtime.base import RuntimeIncompatible

LOG = logging.getLogger(__name__)
Engine = Literal["onnxruntime", "tensorrt"]
PLATFORMS: dict[Engine, str] = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}


@dataclass(frozen=True)
class HostCapabilities:
    """What this process can run: ORT providers, and the GPU / TensorRT a plan must match."""

    ort_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    compute_capability: str | None = None
    tensorrt_version: str | None = None


@dataclass(frozen=True)
class RuntimeChoice:
    artifact: Artifact
    engine: Engine
    providers: tuple[str, ...]
    reason: str

    @property
    def platform(self) -> str:
        return PLATFORMS[self.engine]

    @property
    def device(self) -> str:
        """Metrics label: the first provider / engine that runs the graph."""
        if self.engine == "tensorrt":
            return "tensorrt"
        return self.providers[0].removesuffix("ExecutionProvider").lower()


def ort_providers(available: Sequence[str], use_tensorrt_ep: bool) -> tuple[str, ...]:
    """GPU providers first when present, CPU always last as the fallback."""
    chosen = []
    if use_tensorrt_ep and "TensorrtExecutionProvider" in available:
        chosen.append("TensorrtExecutionProvider")
    if "CUDAExecutionProvider" in available:
        chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return tuple(chosen)


def choose_runtime(manifest: Manifest, host: HostCapabilities, *, use_tensorrt_ep: bool = False) -> RuntimeChoice:
    """The artifact and engine for ``manifest`` on ``host``; raises :class:`RuntimeIncompatible` if none fits."""
    plans = [a for a in manifest.artifacts if a.format == "tensorrt"]
    skipped = []
    for plan in plans:
        if host.compute_capability is None or host.tensorrt_version is None:
            skipped.append(f"{plan.path}: no GPU with TensorRT here")
        elif (plan.compute_capability, plan.tensorrt_version) != (host.compute_capability, host.tensorrt_version):
            skipped.append(
                f"{plan.path}: built for sm {plan.compute_capability} / TensorRT {plan.tensorrt_version}, "
                f"host has sm {host.compute_capability} / TensorRT {host.tensorrt_version}"
            )
        else:
            return RuntimeChoice(plan, "tensorrt", (), f"TensorRT plan matches sm {host.compute_capability}")
    onnx = next((a for a in manifest.artifacts if a.format == "onnx"), None)
    if onnx is None:
        raise RuntimeIncompatible(f"no artifact of {manifest.name}/{manifest.version} runs here: {'; '.join(skipped)}")
    providers = ort_providers(host.ort_providers, use_tensorrt_ep)
    reason = f"ONNX on {providers[0]}" + (f" (skipped {'; '.join(skipped)})" if skipped else "")
    return RuntimeChoice(onnx, "onnxruntime", providers, reason)


@cache
def detect_host() -> HostCapabilities:
    """Probe once per process; GPU libraries are imported only when installed."""
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        providers = tuple(onnxruntime.get_available_providers())
    trt_version = None
    if importlib.util.find_spec("tensorrt") is not None:
        try:
            import tensorrt

            trt_version = str(tensorrt.__version__)
        except Exception as e:  # noqa: BLE001 - a broken install means "no TensorRT", not a crash
            LOG.warning("tensorrt is installed but does not import: %r", e)
    return HostCapabilities(providers, _compute_capability(), trt_version)


def _compute_capability() -> str | None:
    """Of GPU 0, from nvidia-smi (no CUDA library import needed); None without a GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=compute_cap", "--format=csv,noheader", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    cc = out.stdout.strip().splitlines()
    return cc[0].strip() if cc else None
