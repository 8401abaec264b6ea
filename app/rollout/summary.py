"""``GET /v2/models/{model}/rollout``: the policy, requests per version, comparisons, drift and events, from the
pod's merged metrics (every worker's) and the policy file's event log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

from app.rollout.drift import drift_summary
from app.rollout.policy import Policy

SERVER_FAULTS = frozenset({"internal", "inference_failed"})
"""Error codes that count against a version (bad input, overload and deadlines are not the version's fault)."""


@dataclass
class VersionStats:
    requests: int = 0
    errors: int = 0
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))

    def p99(self) -> float | None:
        return quantile(self.buckets, 0.99)


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The ``q`` quantile (upper bucket bound) of a cumulative histogram; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    want = q * buckets[bounds[-1]]
    for b in bounds:
        if buckets[b] >= want:
            return b
    return bounds[-1]


def version_stats(families: Iterable[Metric], model: str) -> dict[int, VersionStats]:
    out: dict[int, VersionStats] = defaultdict(VersionStats)
    for family in families:
        if family.name == "inference_requests":
            for s in family.samples:
                if s.name.endswith("_total") and s.labels.get("model") == model and s.labels["version"].isdigit():
                    st = out[int(s.labels["version"])]
                    st.requests += int(s.value)
                    if s.labels.get("code") in SERVER_FAULTS:
                        st.errors += int(s.value)
        elif family.name == "inference_request_duration_seconds":
            for s in family.samples:
                if s.name.endswith("_bucket") and s.labels.get("model") == model and s.labels["version"].isdigit():
                    out[int(s.labels["version"])].buckets[float(s.labels["le"])] += s.value
    return dict(out)


def comparisons(families: Iterable[Metric], model: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(role, version, reference) -> scored / dropped / errors, mean agreement, mean of each measure."""
    out: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"scored": 0, "dropped": 0, "errors": 0, "agreement": None, "measures": {}}
    )
    sums: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for family in families:
        if family.name not in ("rollout_comparisons", "rollout_agreement", "rollout_difference"):
            continue
        for s in family.samples:
            lab = s.labels
            if lab.get("model") != model:
                continue
            key = (lab["role"], lab["version"], lab["reference"])
            if family.name == "rollout_comparisons" and s.name.endswith("_total"):
                outcome = {"scored": "scored", "dropped": "dropped", "error": "errors"}[lab["outcome"]]
                out[key][outcome] += int(s.value)
            elif s.name.endswith("_sum") or s.name.endswith("_count"):
                which = (*key, lab.get("measure", ""))
                sums[which][0 if s.name.endswith("_sum") else 1] += s.value
    for (role, version, reference, measure), (total, count) in sums.items():
        if count:
            entry = out[(role, version, reference)]
            if measure:
                entry["measures"][measure] = total / count
            else:
                entry["agreement"] = total / count
    return dict(out)


def rollout_summary(model: str, policy: Policy | None, families: list[Metric], ready: list[int]) -> dict[str, Any]:
    stats = version_stats(families, model)
    found = comparisons(families, model)
    return {
        "model": model,
        "policy": None if policy is None else policy.model_dump(mode="json", exclude={"events"}),
        "ready_versions": ready,
        "versions": {
            str(v): {"requests": s.requests, "errors": s.errors, "p99_s": s.p99()} for v, s in sorted(stats.items())
        },
        "shadow": [
            {"role": role, "version": int(version), "reference": int(reference), **entry}
            for (role, version, reference), entry in sorted(found.items())
        ],
        "drift": drift_summary(model),
        "events": [] if policy is None else [e.model_dump(mode="json") for e in policy.events],
    }
