"""Live drift per served version: sliding windows of binned inputs and outputs, compared with the reference
distributions ``compress`` recorded in the manifest, as a population stability index (PSI) per feature.

The data plane calls :meth:`DriftMonitor.observe_task` after each task answer and :meth:`DriftMonitor.observe_tensors`
after each KServe v2 answer. Both return at once for requests that are not sampled (``APP_DRIFT_SAMPLE_RATE``); a
sampled request adds at most ``APP_DRIFT_ROWS_PER_REQUEST`` rows, each an O(1) ring-buffer update per feature (the
bins' edges are precomputed). PSI is computed from the window's counts at most once a second per version and
exported as ``model_drift_psi{model,version,feature}``; :func:`drift_summary` gives the same per version as JSON.
Each worker process keeps its own windows (the metric shows the highest PSI over workers).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from app.logs import RateLimitedLog
from app.manifest import DriftFeature, Manifest
from app.rollout.bins import Binner
from app.rollout.psi import level, psi

if TYPE_CHECKING:
    from app.metrics import Metrics
    from app.settings import Settings
    from app.tasks.base import Task


class ModelVersion(Protocol):
    """What drift needs of a served version (:class:`app.registry.ModelVersion`)."""

    model: str
    version: int
    manifest: Manifest
    task: Task | None


FAILURES = RateLimitedLog(logging.getLogger("app.drift"), interval_s=60.0)
PUBLISH_INTERVAL_S = 1.0
"""Gauges are refreshed at most this often per version (PSI over every feature costs tens of µs)."""
MAX_VERSIONS_PER_MODEL = 8
"""Windows kept per model; the lowest version's is dropped beyond it (bounded memory and label series)."""


class Window:
    """The last ``size`` bin indices of one feature, and their counts per bin (kept up to date on each add)."""

    __slots__ = ("feature", "binner", "size", "filled", "_ring", "_pos", "counts")

    def __init__(self, feature: DriftFeature, size: int) -> None:
        self.feature = feature
        self.binner = Binner(feature)
        self.size = size
        self.filled = 0
        self._ring = [0] * size
        self._pos = 0
        self.counts = [0] * self.binner.bins

    def add(self, value: Any) -> None:
        b = self.binner(value)
        pos = self._pos
        if self.filled == self.size:
            self.counts[self._ring[pos]] -= 1
        else:
            self.filled += 1
        self._ring[pos] = b
        self.counts[b] += 1
        self._pos = pos + 1 if pos + 1 < self.size else 0

    def psi(self) -> float:
        return psi(self.feature.proportions, np.asarray(self.counts, dtype=np.float64))


class VersionDrift:
    """The windows of one version (none when its manifest has no reference: drift is then unavailable)."""

    def __init__(self, manifest: Manifest, window: int) -> None:
        ref = manifest.drift
        self.model, self.version = manifest.name, manifest.version
        self.reference_rows = ref.rows if ref is not None else 0
        self.windows = [Window(f, window) for f in ref.features] if ref is not None else []
        self.tensor_windows = [(w, w.feature.tensor) for w in self.windows if w.feature.tensor is not None]
        self.published = 0.0

    def add_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Task answers: an input left out of a row counts as a missing value, an output left out is not observed."""
        windows = self.windows
        for row in rows:
            for w in windows:
                name = w.feature.name
                if name in row:
                    w.add(row[name])
                elif w.feature.role == "input":
                    w.add(None)

    def add_tensors(self, outputs: Mapping[str, np.ndarray], limit: int) -> None:
        """KServe v2 answers: the features read from an output tensor's first column."""
        for w, name in self.tensor_windows:
            arr = outputs.get(name)
            if arr is None or arr.ndim == 0 or arr.size == 0:
                continue
            for v in arr.reshape(arr.shape[0], -1)[:limit, 0].tolist():
                w.add(v)

    def psi_by_feature(self, min_rows: int) -> dict[str, float | None]:
        """PSI per feature; None until a feature's window holds ``min_rows`` values (too noisy before)."""
        return {w.feature.name: (w.psi() if w.filled >= min_rows else None) for w in self.windows}

    def summary(self, min_rows: int) -> dict[str, Any]:
        if not self.windows:
            return {"available": False, "reason": "the version's manifest has no drift reference"}
        values = self.psi_by_feature(min_rows)
        features = {
            w.feature.name: {
                "role": w.feature.role,
                "psi": None if (p := values[w.feature.name]) is None else round(p, 4),
                "level": None if p is None else level(p),
                "rows": w.filled,
            }
            for w in self.windows
        }
        known = [v for v in values.values() if v is not None]
        return {
            "available": True,
            "reference_rows": self.reference_rows,
            "window_rows": max(w.filled for w in self.windows),
            "min_rows": min_rows,
            "max_psi": round(max(known), 4) if known else None,
            "features": features,
        }


class DriftMonitor:
    """Windows of every observed version of this worker process; see the module docstring."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.rate = settings.drift_sample_rate
        self.rows = settings.drift_rows_per_request
        self.window = settings.drift_window
        self.min_rows = settings.drift_min_rows
        self.metrics = metrics
        self._versions: dict[tuple[str, int], VersionDrift] = {}

    def _sampled(self) -> bool:
        rate = self.rate
        return rate >= 1.0 or (rate > 0.0 and random.random() < rate)

    def observe_task(self, mv: ModelVersion, req: Any, result: Mapping[str, Any]) -> None:
        """After a task answer: the task's observed rows (:meth:`app.tasks.base.Task.drift_rows`) of a sample."""
        if not self._sampled() or mv.task is None:
            return
        try:
            vd = self._version(mv)
            if vd.windows:
                vd.add_rows(mv.task.drift_rows(req, result, self.rows))
                self._publish(vd)
        except Exception as e:  # noqa: BLE001 - monitoring never fails or delays a live answer
            FAILURES.note(f"{mv.model}/{mv.version}: drift observation failed: {e!r}")

    def observe_tensors(self, mv: ModelVersion, outputs: Mapping[str, np.ndarray]) -> None:
        """After a KServe v2 answer: the output features recorded with a tensor name (raw models: outputs only)."""
        if not self._sampled():
            return
        try:
            vd = self._version(mv)
            if vd.tensor_windows:
                vd.add_tensors(outputs, self.rows)
                self._publish(vd)
        except Exception as e:  # noqa: BLE001 - monitoring never fails or delays a live answer
            FAILURES.note(f"{mv.model}/{mv.version}: drift observation failed: {e!r}")

    def _version(self, mv: ModelVersion) -> VersionDrift:
        key = (mv.model, mv.version)
        vd = self._versions.get(key)
        if vd is None:
            vd = self._versions[key] = VersionDrift(mv.manifest, self.window)
            mine = sorted(v for m, v in self._versions if m == mv.model)
            for old in mine[: max(0, len(mine) - MAX_VERSIONS_PER_MODEL)]:
                self.forget(mv.model, old)
        return vd

    def _publish(self, vd: VersionDrift, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - vd.published < PUBLISH_INTERVAL_S:
            return
        vd.published = now
        gauge, version = self.metrics.drift_psi, str(vd.version)
        for name, value in vd.psi_by_feature(self.min_rows).items():
            if value is not None:
                gauge.labels(vd.model, version, name).set(value)

    def forget(self, model: str, version: int) -> None:
        """Drop a version's windows (unloaded, or beyond the per-model bound) and its gauges."""
        if self._versions.pop((model, version), None) is not None:
            self.metrics.forget_drift(model, version)

    def summary(self, model: str) -> dict[str, Any]:
        out = {}
        for (m, v), vd in sorted(self._versions.items()):
            if m == model:
                self._publish(vd, force=True)
                out[str(v)] = vd.summary(self.min_rows)
        return out


_MONITOR: DriftMonitor | None = None


def install(settings: Settings, metrics: Metrics) -> DriftMonitor:
    """The process's monitor (one per app; :func:`drift_summary` reads the latest installed)."""
    global _MONITOR
    _MONITOR = DriftMonitor(settings, metrics)
    return _MONITOR


def drift_summary(model: str) -> dict[str, Any]:
    """Per version of ``model`` observed by this worker: PSI per feature (None below the minimum window), its
    level (stable < 0.1 <= moderate <= 0.25 < significant), window sizes; or why drift is unavailable."""
    return {} if _MONITOR is None else _MONITOR.summary(model)


def forget_version(model: str, version: int) -> None:
    """The registry unloaded a version: its windows go (a reload starts a fresh window)."""
    if _MONITOR is not None:
        _MONITOR.forget(model, version)
