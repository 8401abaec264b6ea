"""Live input/output drift per version (population stability against the manifest's reference distributions)."""

from __future__ import annotations

from typing import Any


def drift_summary(model: str) -> dict[str, Any]:
    """The ``drift`` part of ``GET /v2/models/{model}/rollout``."""
    return {}
