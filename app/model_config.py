"""Triton's model config of a served version (the batching-relevant part), as a protocol-neutral document.

HTTP returns it as JSON (``GET /v2/models/{model}/config``, read by perf_analyzer before its first request);
gRPC parses the same document into ``inference.ModelConfig``. Neither layer imports the other.
"""

from __future__ import annotations

from typing import Any

from app.manifest import TensorSpec
from app.service import InferenceService


def data_type(datatype: str) -> str:
    """KServe datatype -> Triton ``DataType`` enum name (BYTES is TYPE_STRING there)."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def model_config_json(svc: InferenceService, model: str, version: int | None) -> dict[str, Any]:
    """The same config as Triton's HTTP ``GET /v2/models/{model}/config`` body (ints stay ints)."""
    mv = svc.registry.resolve(model, version)
    manifest = mv.manifest
    batched = all(s.shape and s.shape[0] == -1 for s in [*manifest.inputs, *manifest.outputs])
    batch = svc.registry.batch_config(manifest)

    def tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
        return [
            {"name": s.name, "data_type": data_type(s.dtype), "dims": list(s.shape[1:] if batched else s.shape)}
            for s in specs
        ]

    doc: dict[str, Any] = {
        "name": model,
        "platform": svc.model_metadata(model, version)["platform"],
        "backend": "onnxruntime",
        "max_batch_size": batch.max_batch_rows if batched else 0,
        "input": tensors(manifest.inputs),
        "output": tensors(manifest.outputs),
    }
    if batched:
        doc["dynamic_batching"] = {"max_queue_delay_microseconds": batch.max_queue_delay_us}
    return doc
