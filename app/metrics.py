"""Every Prometheus metric of the service, on an injected ``CollectorRegistry`` (never the global one).

Latencies are in seconds (Prometheus convention) with buckets fine enough for p50/p99 in the millisecond
range. Queue wait and compute are separate histograms so a slow p99 can be blamed on one or the other.
"""

from __future__ import annotations

import os
import struct
import threading
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from app.batching import BatchStats

# 0.25 ms .. 10 s, denser where online requests live (1-50 ms).
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015,
    0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
AGREEMENT_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
DIFFERENCE_BUCKETS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0, 2.0)
"""Per-task comparison measures: absolute differences (small is good) and overlaps/correlations (1 is good).
No negative bound (a rank correlation below 0 counts in ``le="0.0"``): prometheus_client drops a histogram's
``_sum`` when its first bound is negative, and the summary's means need it."""
BATCH_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class FastHistogram:
    """``observe`` on one labelled histogram child by binary search over its bounds (prometheus_client scans the 27
    bounds in a Python loop; a request makes two observations). Same values, same exposition (tested)."""

    __slots__ = ("_bounds", "_buckets", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._sum: Any = child._sum
        self._buckets: list[Any] = child._buckets
        self._bounds: list[float] = child._upper_bounds

    def observe(self, amount: float) -> None:
        self._sum.inc(amount)
        self._buckets[bisect_left(self._bounds, amount)].inc(1)


_PACK = struct.Struct("dd").pack_into
_WRITE_LOCK = threading.Lock()


def use_lean_multiprocess_values() -> None:
    """Make every metric value created from now on write its mmap slot directly.

    prometheus_client's multiprocess value takes a lock, checks for a fork (``os.getpid``) and looks its slot up by
    key on every ``inc``/``set``: ~0.8 µs, about eight times per request. Worker processes are spawned, never
    forked after their metrics exist, so the fork check is dropped and the slot's offset is kept; one lock still
    serialises writers (batch statistics are recorded from worker threads). Reading and merging are unchanged.
    """
    from prometheus_client import values

    base: Any = values.ValueClass
    if not getattr(base, "_multiprocess", False) or getattr(base, "lean", False):
        return

    class LeanMmapedValue(base):  # type: ignore[misc]
        lean = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._slot = self._file._positions[self._key]

        def inc(self, amount: float) -> None:
            with _WRITE_LOCK:
                self._value += amount
                _PACK(self._file._m, self._slot, self._value, 0.0)

        def set(self, value: float, timestamp: float | None = None) -> None:
            with _WRITE_LOCK:
                self._value = value
                _PACK(self._file._m, self._slot, value, timestamp or 0.0)

    values.ValueClass = LeanMmapedValue


class Metrics:
    """Holds the metric objects; one instance per app, created by the app factory."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        use_lean_multiprocess_values()
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "inference_requests", "Requests by endpoint, model, version, outcome (ok|error) and error code.",
            ["endpoint", "model", "version", "outcome", "code"], registry=r,
        )  # fmt: skip
        self.request_latency = Histogram(
            "inference_request_duration_seconds", "End-to-end handling time of a request inside the service.",
            ["endpoint", "model", "version"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_time = Histogram(
            "inference_queue_duration_seconds", "Time a batcher item waited before its batch started running.",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute_time = Histogram(
            "inference_compute_duration_seconds", "Worker time of one batch: featurizing raw rows, if any, and the model.",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_rows = Histogram(
            "inference_batch_rows", "Rows per executed batch.", ["model", "version"],
            buckets=BATCH_ROW_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_rows = Gauge(
            "inference_queue_rows",
            "Rows waiting in the batcher queue.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.in_flight_limit = Gauge(
            "inference_in_flight_limit",
            "Adaptive cap on requests in progress (APP_ADAPTIVE_IN_FLIGHT), summed over worker processes.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.load_events = Counter(
            "model_load_events", "Version lifecycle events (load, unload).", ["model", "version", "event"], registry=r
        )
        self.load_failures = Counter(
            "model_load_failures", "Versions that failed verification, load or warm-up.",
            ["model", "version", "reason"], registry=r,
        )  # fmt: skip
        self.runtime_info = Gauge(
            "model_runtime_info", "1 per loaded version: the artifact's platform and the device/provider it runs on.",
            ["model", "version", "platform", "device"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.loaded_bytes = Gauge(
            "model_loaded_bytes",
            "Bytes of model files held by loaded versions (summed over worker processes).",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.refusals = Counter(
            "inference_admission_refusals", "Requests refused because their expected queue time exceeded the budget.",
            ["model", "version"], registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "inference_in_flight",
            "Requests holding a version (admitted, not yet answered), sampled once a second per worker.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ready_versions = Gauge(
            "model_ready_versions",
            "READY versions of each model in the repository (the minimum over worker processes: 0 = some worker "
            "cannot serve the model).",
            ["model"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.repository_scan_problems = Counter(
            "model_repository_scan_problems",
            "Repository scans not trusted (reason: missing, unreadable, empty, model_missing, model_unreadable); the "
            "loaded versions were kept.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.repository_degraded = Gauge(
            "model_repository_degraded",
            "1 while the latest repository scan of a worker was not trusted (serving the last good versions).",
            registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.integrity_failures = Counter(
            "model_integrity_failures",
            "Served versions whose files were deleted (missing_file) or changed (checksum) after they were loaded.",
            ["model", "version", "reason"], registry=r,
        )  # fmt: skip
        self.task_crashes = Counter(
            "background_task_crashes", "Background loops (batch collector, watcher) that crashed and were restarted.",
            ["task"], registry=r,
        )  # fmt: skip
        self.policy_problems = Counter(
            "rollout_policy_problems",
            "Rollout policies ignored at read time (bad_policy, unknown_version, unreadable); the last good one is kept.",
            ["model", "reason"], registry=r,
        )  # fmt: skip
        self.rollout_comparisons = Counter(
            "rollout_comparisons",
            "Shadow and canary comparisons by outcome (scored, dropped: the worker was busy, error); role shadow: "
            "version = the shadow, reference = the version that answered; role canary: version = the canary, "
            "reference = the stable version scoring the same request.",
            ["model", "role", "version", "reference", "outcome"], registry=r,
        )  # fmt: skip
        self.rollout_agreement = Histogram(
            "rollout_agreement",
            "Agreement (0-1, per task: candidates within 0.02 pCTR, same intent, top-10 overlap) of a version's "
            "answers with its reference's.",
            ["model", "role", "version", "reference"], buckets=AGREEMENT_BUCKETS, registry=r,
        )  # fmt: skip
        self.rollout_difference = Histogram(
            "rollout_difference",
            "Per-task comparison measures of a version against its reference (measure: pctr_abs_diff, rank_corr, "
            "intent_agree, confidence_diff, overlap_at_10, ndcg_at_10, max_abs_diff).",
            ["model", "role", "version", "reference", "measure"], buckets=DIFFERENCE_BUCKETS, registry=r,
        )  # fmt: skip
        self.rollout_rollbacks = Counter(
            "rollout_rollbacks",
            "Canaries set to weight 0 by the service because they broke a policy limit.",
            ["model", "version", "limit"], registry=r,
        )  # fmt: skip
        self.rollout_canary_weight = Gauge(
            "rollout_canary_weight", "Traffic weight (0-1) of the canary version the policy names.",
            ["model", "version"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip

        self.drift_psi = Gauge(
            "model_drift_psi",
            "Population stability index of a version's live inputs/outputs against its manifest's reference, per "
            "feature (>0.25: a significant shift); the highest over worker processes.",
            ["model", "version", "feature"],
            registry=r,
            multiprocess_mode="livemax",
        )

        self._request_children: dict[tuple[str, ...], tuple[Any, Any]] = {}

    def request_observers(self, endpoint: str, model: str, version: str, outcome: str, code: str) -> tuple[Any, Any]:
        """(counter, latency histogram) children for one label set, cached: ``labels()`` costs a lock per call."""
        key = (endpoint, model, version, outcome, code)
        pair = self._request_children.get(key)
        if pair is None:
            pair = (self.requests.labels(*key), FastHistogram(self.request_latency.labels(endpoint, model, version)))
            self._request_children[key] = pair
        return pair

    def render(self) -> bytes:
        """The text exposition format for ``GET /metrics``; with several worker processes, every worker's
        samples merged (prometheus_client multiprocess mode: counters and histograms summed, gauges per mode)."""
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        merged.register(_HeldVersionsOnly(folder))
        return generate_latest(merged)

    def families(self) -> list[Metric]:
        """The metric families ``render`` would expose (every worker's, merged), for summaries built in-process."""
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder is None:
            return list(self.registry.collect())
        return list(_HeldVersionsOnly(folder).collect())

    def forget_version(self, model: str, version: int) -> None:
        """Drop the per-version gauges of an unloaded version (counters stay: they record history)."""
        labels = (model, str(version))
        multiproc = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        for gauge in (self.queue_rows, self.loaded_bytes, self.in_flight):
            if multiproc:  # labels cannot be removed from a worker's file: zero them, the merged view drops them
                gauge.labels(*labels).set(0)
                continue
            try:
                gauge.remove(*labels)
            except KeyError:
                pass
        for sample_labels in [k for k in self.runtime_info._metrics if k[:2] == labels]:
            if multiproc:
                self.runtime_info.labels(*sample_labels).set(0)
            else:
                self.runtime_info.remove(*sample_labels)

        self.forget_drift(model, version)

    def forget_drift(self, model: str, version: int) -> None:
        """Drop a version's drift gauges (bounded label series: versions no longer served or observed)."""
        labels = (model, str(version))
        multiproc = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        for sample_labels in [k for k in self.drift_psi._metrics if k[:2] == labels]:
            if multiproc:
                self.drift_psi.labels(*sample_labels).set(0)
            else:
                self.drift_psi.remove(*sample_labels)


PER_VERSION_GAUGES = (
    "model_drift_psi",
    "model_loaded_bytes",
    "inference_queue_rows",
    "model_runtime_info",
    "inference_in_flight",
    "inference_in_flight_limit",
)


class _HeldVersionsOnly:
    """The merged multiprocess view without per-version gauges of versions no worker holds any more (a worker's
    mmap file keeps every label it ever set; a version held by some worker has ``model_loaded_bytes`` > 0)."""

    def __init__(self, folder: str) -> None:
        from prometheus_client import multiprocess

        self._inner = multiprocess.MultiProcessCollector(None, path=folder)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        families: list[Metric] = list(self._inner.collect())  # type: ignore[no-untyped-call]
        held = {(s.labels.get("model"), s.labels.get("version")) for f in families if f.name == "model_loaded_bytes"
                for s in f.samples if s.value > 0}  # fmt: skip
        for family in families:
            if family.name in PER_VERSION_GAUGES:
                family.samples = [s for s in family.samples if (s.labels.get("model"), s.labels.get("version")) in held]
            yield family


class VersionBatchStats(BatchStats):
    """Records one version's batcher events into :class:`Metrics` (children are labelled once)."""

    def __init__(self, metrics: Metrics, model: str, version: int) -> None:
        labels = (model, str(version))
        self._depth = metrics.queue_rows.labels(*labels)
        self._wait = FastHistogram(metrics.queue_time.labels(*labels))
        self._compute = FastHistogram(metrics.compute_time.labels(*labels))
        self._rows = FastHistogram(metrics.batch_rows.labels(*labels))
        self._crashes = metrics.task_crashes.labels("batcher")
        self._refused = metrics.refusals.labels(*labels)
        self._limit = metrics.in_flight_limit.labels(*labels)

    def queue_depth(self, rows: int) -> None:
        self._depth.set(rows)

    def waited(self, seconds: float) -> None:
        self._wait.observe(seconds)

    def ran(self, rows: int, seconds: float) -> None:
        self._rows.observe(rows)
        self._compute.observe(seconds)

    def collector_crashed(self) -> None:
        self._crashes.inc()

    def refused(self) -> None:
        self._refused.inc()

    def in_flight_limit(self, limit: int) -> None:
        self._limit.set(limit)
