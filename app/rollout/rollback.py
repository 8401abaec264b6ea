"""Automatic rollback: a canary that breaks one of its policy's limits is set to weight 0 by the service.

Only the first worker of a pod judges (from the pod's merged metrics) and writes; the write is atomic and locked
(:func:`app.rollout.policy.update_policy`) and a no-op when another pod got there first. The pod's other workers
are told at once (:func:`app.pod.broadcast`); other pods through the Redis notice a ``compress policy set`` sends
(``APP_REDIS_CHANNEL``, when ``APP_REDIS_URL`` is set), or else at their next rescan. The canary
stays loaded (still named), so requests in flight on it finish and the stable version answers the next ones: no
request fails during the switch.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from app.logs import redact, redact_url
from app.pod import broadcast
from app.rollout.policy import Policy, PolicyError, rollback_change, update_policy
from app.rollout.summary import comparisons, version_stats

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from app.registry import ModelRegistry

LOG = logging.getLogger(__name__)


def breach(policy: Policy, model: str, families: list[Metric]) -> tuple[str, str] | None:
    """``(limit, reason)`` of the first limit the canary breaks, None while it holds (or is not judged yet)."""
    canary, limits = policy.canary, policy.limits
    if canary is None or canary.weight <= 0:
        return None
    stats = version_stats(families, model)
    mine = stats.get(canary.version)
    if mine is None or mine.requests < limits.min_requests:
        return None
    if limits.max_error_rate is not None and mine.errors / mine.requests > limits.max_error_rate:
        return "max_error_rate", (
            f"error rate {mine.errors / mine.requests:.3f} over {mine.requests} requests > {limits.max_error_rate}"
        )
    stable = stats.get(policy.stable)
    mine_p99, stable_p99 = mine.p99(), stable.p99() if stable is not None else None
    if limits.max_p99_ratio is not None and mine_p99 and stable_p99:
        if mine_p99 / stable_p99 > limits.max_p99_ratio:
            return "max_p99_ratio", (
                f"p99 {mine_p99 * 1000:.1f} ms vs stable {stable_p99 * 1000:.1f} ms > x{limits.max_p99_ratio}"
            )
    if limits.min_agreement is not None:
        entry = comparisons(families, model).get(("canary", str(canary.version), str(policy.stable)))
        needed = max(10, limits.min_requests // 10)
        if entry is not None and entry["scored"] >= needed and entry["agreement"] is not None:
            if entry["agreement"] < limits.min_agreement:
                return "min_agreement", (
                    f"agreement with stable {policy.stable} {entry['agreement']:.3f} over {entry['scored']} "
                    f"comparisons < {limits.min_agreement}"
                )
    return None


async def check_canaries(registry: ModelRegistry) -> None:
    """Judge every canary once; roll back the ones breaking a limit (the caller runs this periodically)."""
    metrics = registry.metrics
    if not any(p.canary is not None for p in registry.policies.values()):
        return
    families = await asyncio.to_thread(metrics.families)
    for model, policy in list(registry.policies.items()):
        if policy.canary is not None:
            metrics.rollout_canary_weight.labels(model, str(policy.canary.version)).set(policy.canary.weight)
        found = breach(policy, model, families)
        if found is None or policy.canary is None:
            continue
        limit, reason = found
        version = policy.canary.version
        try:
            new = await asyncio.to_thread(update_policy, registry.root, model, rollback_change(version, reason))
        except (PolicyError, OSError) as e:
            LOG.error("canary %s/%s broke %s (%s) but the policy could not be written: %s", model, version, limit,
                      reason, e)  # fmt: skip
            continue
        metrics.rollout_rollbacks.labels(model, str(version), limit).inc()
        metrics.rollout_canary_weight.labels(model, str(version)).set(0)
        LOG.error("canary %s/%s rolled back (weight 0): %s: %s", model, version, limit, reason)
        if new is not None:
            registry.policies[model] = new  # this worker at once
        broadcast("sync", model)  # its sibling workers within about a second
        if new is not None:
            await announce(registry.settings.redis_url, registry.settings.redis_channel, model, new.stable)


async def announce(url: str | None, channel: str, model: str, stable: int) -> bool:
    """Other pods rescan at once: the notice ``compress policy set`` sends (``{"model", "version"}``, the stable
    version) on the repository notice channel. Failures warn: the policy file is the truth, a lost notice costs
    one rescan interval. True when Redis took it."""
    if not url:
        return False
    import redis.asyncio as aioredis

    client: Any = aioredis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
    try:
        receivers = await client.publish(channel, json.dumps({"model": model, "version": stable}))
    except Exception as e:  # noqa: BLE001 - Redis is optional; the other pods' rescans still see the file
        LOG.warning("rollback of %s written, but the %r notice to %s failed: %s", model, channel, redact_url(url),
                    redact(repr(e)))  # fmt: skip
        return False
    finally:
        await client.aclose()
    LOG.info("sent the %r notice for the rollback of %s to %d listener(s)", channel, model, receivers)
    return True
