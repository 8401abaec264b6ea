"""Rollout policy (schema, write-time refusals, read-time fallback), routing (stickiness, weights) and the
per-task comparison functions."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.metrics import Metrics
from app.registry import ModelRegistry
from app.rollout.compare import Comparison, max_abs_diff, ndcg_at, overlap_at, spearman
from app.rollout.policy import (
    Policy,
    PolicyError,
    parse_policy,
    promote_change,
    read_policy,
    rollback_change,
    schema,
    set_change,
    update_policy,
)
from app.rollout.rollback import breach
from app.rollout.router import bucket, choose, sticky_value
from app.rollout.shadow import Mirror, _too_busy
from app.rollout.summary import comparisons
from app.settings import Settings
from app.tasks.chat.task import ChatTask
from app.tasks.ctr.task import CtrTask
from app.tasks.recommend.task import RecommendTask
from app.tasks.search.task import SearchTask

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _repo(tmp_path: Path, versions: tuple[int, ...] = (1, 2, 3)) -> Path:
    for v in versions:
        (tmp_path / "m" / str(v)).mkdir(parents=True)
        (tmp_path / "m" / str(v) / "manifest.json").write_text("{}")
    return tmp_path


def test_checked_in_schema_is_the_models() -> None:
    on_disk = json.loads((ROOT / "model_repo" / "policy.schema.json").read_text())
    assert on_disk == schema(), "regenerate: python -m app.rollout.policy > model_repo/policy.schema.json"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (set_change(stable=9), "unknown_version"),
        (set_change(stable=1, canary=2, weight=1.5), "bad_policy"),
        (set_change(stable=1, canary=1, weight=0.1), "bad_policy"),
        (set_change(stable=1, canary=2), "bad_policy"),
        (set_change(stable=1, shadow=2, shadow_rate=-0.1), "bad_policy"),
        (set_change(stable=1, canary=2, weight=0.1, sticky="user id; drop"), "bad_policy"),
        (promote_change, "no_canary"),
    ],
)
def test_bad_changes_are_refused_and_leave_the_file(tmp_path: Path, change: object, reason: str) -> None:
    repo = _repo(tmp_path)
    update_policy(repo, "m", set_change(stable=1))
    before = (repo / "m" / "policy.json").read_bytes()
    with pytest.raises(PolicyError) as e:
        update_policy(repo, "m", change)  # type: ignore[arg-type]
    assert e.value.reason == reason, str(e.value)
    assert (repo / "m" / "policy.json").read_bytes() == before


def test_unknown_schema_version_is_refused() -> None:
    with pytest.raises(PolicyError, match="schema_version"):
        parse_policy(json.dumps({"schema_version": 99, "stable": 1}))


def test_promote_and_rollback_record_events(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    update_policy(repo, "m", set_change(stable=1, canary=2, weight=0.5, sticky="user_id", shadow=3))
    stopped = update_policy(repo, "m", rollback_change(2, "agreement 0.1 < 0.9"))
    assert stopped is not None and stopped.canary is not None and stopped.canary.weight == 0, stopped
    assert stopped.events[-1].kind == "rollback" and "agreement" in stopped.events[-1].reason, stopped.events
    again = update_policy(repo, "m", rollback_change(2, "a second worker"))
    assert again == stopped, "a rollback already done must not be written twice"
    promoted = update_policy(repo, "m", promote_change)
    assert promoted is not None and (promoted.stable, promoted.canary) == (2, None), promoted
    assert read_policy(repo, "m") == promoted


async def test_a_bad_policy_on_disk_keeps_the_last_good_one(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    metrics = Metrics()
    registry = ModelRegistry(Settings(model_repo=repo), metrics)
    update_policy(repo, "m", set_change(stable=2))
    good = await registry._refresh_policy("m", [1, 2, 3])
    assert good is not None and good.stable == 2
    (repo / "m" / "policy.json").write_text('{"stable": "two"}')
    assert await registry._refresh_policy("m", [1, 2, 3]) == good
    (repo / "m" / "policy.json").write_text('{"stable": 7}')
    assert await registry._refresh_policy("m", [1, 2, 3]) == good
    got = {r: metrics.policy_problems.labels("m", r)._value.get() for r in ("bad_policy", "unknown_version")}
    assert got == {"bad_policy": 1.0, "unknown_version": 1.0}, got
    (repo / "m" / "policy.json").unlink()
    assert await registry._refresh_policy("m", [1, 2, 3]) is None and "m" not in registry.policies


def test_sticky_keys_split_by_weight_and_stay_put() -> None:
    policy = Policy.model_validate({"stable": 1, "canary": {"version": 2, "weight": 0.05, "sticky": "user_id"}})

    class Req:
        def __init__(self, user: str) -> None:
            self.user_id = user

    rng = random.Random(0)
    picks = {u: choose(policy, Req(f"u{u}"), None, rng) for u in range(20_000)}
    share = sum(v == 2 for v in picks.values()) / len(picks)
    assert 0.04 < share < 0.06, f"canary share {share} at weight 0.05"
    assert all(choose(policy, Req(f"u{u}"), None, rng) == v for u, v in list(picks.items())[:2000])
    unkeyed = [choose(policy, object(), None, random.Random(7)) for _ in range(1)]
    draws = random.Random(7)
    many = [choose(policy, object(), None, draws) for _ in range(20_000)]
    assert unkeyed and 0.04 < many.count(2) / len(many) < 0.06, many.count(2)


def test_stable_hash_does_not_depend_on_the_process() -> None:
    code = "from app.rollout.router import bucket; print(repr(bucket('customer-42', 2)))"
    out = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True,
            check=True, cwd=ROOT,
        ).stdout.strip()
        for seed in ("1", "2")
    }  # fmt: skip
    assert out == {repr(bucket("customer-42", 2))}, out


def test_sticky_value_sources() -> None:
    class Ctr:
        context = {"C1": "abc"}
        user_id = None

    assert sticky_value("C1", Ctr(), None) == "abc"
    assert sticky_value("header:x-user-id", None, [(b"x-user-id", b"7")]) == "7"
    assert sticky_value("header:x-user-id", None, {"x-user-id": "8"}) == "8"
    assert sticky_value("user_id", Ctr(), None) is None


def test_generic_measures() -> None:
    assert spearman([0.1, 0.2, 0.3], [1, 2, 3]) == pytest.approx(1.0)
    assert spearman([0.1, 0.2, 0.3], [3, 2, 1]) == pytest.approx(-1.0)
    assert overlap_at(list("abcdefghij"), list("abcdeklmno")) == 0.5
    assert ndcg_at(list("abc"), list("abc")) == pytest.approx(1.0)
    assert ndcg_at(list("abc"), list("cba")) < 1.0
    same = max_abs_diff({"y": [[0.5], [0.2]]}, {"y": [[0.5], [0.2]]})
    off = max_abs_diff({"y": [[0.5], [0.2]]}, {"y": [[0.5], [0.5]]})
    assert same.agreement == 1.0 and off.measures["max_abs_diff"] == pytest.approx(0.3), (same, off)


def test_task_comparisons() -> None:
    ctr = CtrTask.compare(
        {"scores": [{"ad_id": "a", "pctr": 0.1}, {"ad_id": "b", "pctr": 0.2}]},
        {"scores": [{"ad_id": "a", "pctr": 0.3}, {"ad_id": "b", "pctr": 0.21}]},
    )
    assert ctr.agreement == 0.5 and ctr.measures["rank_corr"] == pytest.approx(-1.0), ctr
    chat = ChatTask.compare({"intent": "refund", "confidence": 0.9}, {"intent": "refund", "confidence": 0.7})
    assert chat.agreement == 1.0 and chat.measures["confidence_diff"] == pytest.approx(0.2), chat
    ranked = [{"product_id": p, "rank": i + 1} for i, p in enumerate("abcd")]
    search = SearchTask.compare({"results": ranked}, {"results": list(reversed(ranked))})
    assert search.agreement == 1.0 and search.measures["ndcg_at_10"] == pytest.approx(1.0), search
    flipped = [{"product_id": p, "rank": 4 - i} for i, p in enumerate("abcd")]
    assert SearchTask.compare({"results": ranked}, {"results": flipped}).measures["ndcg_at_10"] < 1.0
    rec = RecommendTask.compare({"items": [{"item_id": "x"}, {"item_id": "y"}]}, {"items": [{"item_id": "x"}]})
    assert rec.agreement == 0.5, rec


def _traffic(metrics: Metrics, version: str, ok: int, errors: int, seconds: float) -> None:
    for _ in range(ok):
        metrics.requests.labels("ctr", "m", version, "ok", "ok").inc()
        metrics.request_latency.labels("ctr", "m", version).observe(seconds)
    metrics.requests.labels("ctr", "m", version, "error", "inference_failed").inc(errors)


@pytest.mark.parametrize(
    ("canary", "limits", "expected"),
    [
        ((100, 0, 0.004), {"max_error_rate": 0.01, "max_p99_ratio": 2.0}, None),
        ((100, 10, 0.004), {"max_error_rate": 0.01}, "max_error_rate"),
        ((100, 0, 0.05), {"max_p99_ratio": 2.0}, "max_p99_ratio"),
        ((30, 30, 0.05), {"max_error_rate": 0.01, "max_p99_ratio": 2.0}, None),  # under min_requests: not judged
    ],
)
def test_canary_limits(canary: tuple[int, int, float], limits: dict[str, float], expected: str | None) -> None:
    metrics = Metrics()
    _traffic(metrics, "1", 400, 0, 0.004)
    _traffic(metrics, "2", *canary)
    policy = Policy.model_validate(
        {"stable": 1, "canary": {"version": 2, "weight": 0.2}, "limits": {**limits, "min_requests": 100}}
    )
    found = breach(policy, "m", metrics.families())
    assert (found[0] if found else None) == expected, found


def test_agreement_limit_waits_for_enough_comparisons() -> None:
    metrics = Metrics()
    _traffic(metrics, "1", 400, 0, 0.004)
    _traffic(metrics, "2", 100, 0, 0.004)
    policy = Policy.model_validate(
        {"stable": 1, "canary": {"version": 2, "weight": 0.2}, "limits": {"min_agreement": 0.9, "min_requests": 100}}
    )
    mirror = Mirror(ModelRegistry(Settings(), metrics), metrics, 2, 1.0)
    for _ in range(9):
        mirror.record(("m", "canary", "2", "1"), Comparison(0.2))
    assert breach(policy, "m", metrics.families()) is None, "9 comparisons are under the minimum of 10"
    mirror.record(("m", "canary", "2", "1"), Comparison(0.2))
    found = breach(policy, "m", metrics.families())
    assert found is not None and found[0] == "min_agreement" and "0.200" in found[1], found


def test_measure_means_include_negative_correlations_in_one_process() -> None:
    """A single-worker server reads its own registry (no multiprocess merge): every measure needs its ``_sum``."""
    metrics = Metrics()
    mirror = Mirror(ModelRegistry(Settings(), metrics), metrics, 2, 1.0)
    labels = ("m", "shadow", "2", "1")
    mirror.record(labels, Comparison(0.5, {"pctr_abs_diff": 0.03, "rank_corr": -0.4}))
    mirror.record(labels, Comparison(1.0, {"pctr_abs_diff": 0.01, "rank_corr": 1.0}))
    entry = comparisons(metrics.families(), "m")[("shadow", "2", "1")]
    assert entry["scored"] == 2 and entry["agreement"] == pytest.approx(0.75), entry
    assert entry["measures"]["pctr_abs_diff"] == pytest.approx(0.02), entry
    assert entry["measures"]["rank_corr"] == pytest.approx(0.3), entry


class _Queue:
    """A batcher's admission view: its expected wait, queue budget, and whether anything is queued or running."""

    def __init__(self, wait_s: float, budget_s: float | None) -> None:
        self.wait_s, self.config = wait_s, SimpleNamespace(queue_budget_s=budget_s)
        self.busy = wait_s > 0

    def expected_wait_s(self) -> float:
        return self.wait_s


@pytest.mark.parametrize(
    ("wait_s", "budget_s", "shadow_dropped", "canary_dropped"),
    [(0.0, 0.1, False, False), (0.01, 0.1, True, False), (0.06, 0.1, True, True), (0.04, None, True, False)],
)
def test_canary_samples_wait_behind_a_short_queue_shadow_samples_do_not(
    wait_s: float, budget_s: float | None, shadow_dropped: bool, canary_dropped: bool
) -> None:
    queue: Any = _Queue(wait_s, budget_s)
    assert (_too_busy(queue, "shadow"), _too_busy(queue, "canary")) == (shadow_dropped, canary_dropped), (
        wait_s,
        budget_s,
    )
