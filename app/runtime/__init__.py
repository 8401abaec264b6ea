"""Model runtimes behind one protocol; each imports its heavy engine (onnxruntime, tensorrt) lazily."""

from __future__ import annotations

from app.runtime.base import Runtime, RuntimeOptions

__all__ = ["Runtime", "RuntimeOptions"]
