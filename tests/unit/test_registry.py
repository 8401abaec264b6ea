"""Version selection policy and model-name safety (path traversal) in the registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.errors import ModelNotFound, ModelNotReady
from app.metrics import Metrics
from app.registry import ModelRegistry, select_versions
from app.repository import RepositoryError, model_dir
from app.settings import ModelSettings, Settings, VersionPolicy


@pytest.mark.parametrize(
    ("on_disk", "failed", "policy", "expected"),
    [
        ([1, 2, 3], set(), VersionPolicy(latest=1), {3}),
        ([1, 2, 3], set(), VersionPolicy(latest=2), {2, 3}),
        ([1, 2, 3], {3}, VersionPolicy(latest=1), {2}),  # a failed newest keeps the previous one
        ([1, 2, 3], set(), VersionPolicy(specific=[1, 3, 7]), {1, 3}),
        ([1, 2, 3], {1}, VersionPolicy(specific=[1]), set()),
        ([], set(), VersionPolicy(latest=1), set()),
    ],
)
def test_select_versions(on_disk: list[int], failed: set[int], policy: VersionPolicy, expected: set[int]) -> None:
    assert select_versions(on_disk, failed, policy) == expected


@pytest.mark.parametrize("name", ["../etc", "..", "a/b", "/abs", ".hidden", "a\\b", "", "x" * 65, "..%2F.."])
def test_traversal_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(RepositoryError):
        model_dir(tmp_path, name)
    registry = ModelRegistry(Settings(model_repo=tmp_path), Metrics())
    with pytest.raises(ModelNotFound):
        registry.resolve(name)


def test_unknown_model_and_version(tmp_path: Path) -> None:
    registry = ModelRegistry(Settings(model_repo=tmp_path), Metrics())
    with pytest.raises(ModelNotReady):  # before any scan nothing is known to be missing: retryable, not 404
        registry.resolve("ad-ctr")
    assert asyncio.run(registry.scan()), "an empty, readable repository is a successful scan"
    with pytest.raises(ModelNotFound):
        registry.resolve("ad-ctr")
    with pytest.raises(ModelNotFound):
        registry.resolve("ad-ctr", 3)


def test_unknown_model_message_lists_the_models_served(tmp_path: Path) -> None:
    registry = ModelRegistry(Settings(model_repo=tmp_path), Metrics())
    registry._on_disk = {"ad-ctr": [1], "chat-intent": [2]}
    registry.scanned = True  # before the first good scan an unknown model is "not ready yet", not "not found"
    with pytest.raises(ModelNotFound) as e:
        registry.resolve("ad_ctr")
    assert str(e.value) == (
        "model 'ad_ctr' is not in the repository; did you mean 'ad-ctr'? models served: ad-ctr, chat-intent"
    ), str(e.value)


def test_batch_config_per_model_settings_win_over_process_wide_ones_and_the_manifest(tmp_path: Path) -> None:
    from tests.unit.test_manifest_repo import make_manifest

    (tmp_path / "m").mkdir()
    manifest = make_manifest(tmp_path / "m", 1)  # serving defaults: 512 rows, 0 µs, 8192 queued rows
    models = {"m": ModelSettings(max_batch_rows=64, max_queue_delay_us=0, queue_cap_rows=100)}
    s = Settings(model_repo=tmp_path, max_batch_rows=32, max_queue_delay_us=500, models=models)
    per_model = ModelRegistry(s, Metrics()).batch_config(manifest)
    assert (per_model.max_batch_rows, per_model.max_queue_delay_us, per_model.queue_cap_rows) == (64, 0, 100)
    other = ModelRegistry(s, Metrics()).batch_config(manifest.model_copy(update={"name": "other"}))
    assert (other.max_batch_rows, other.max_queue_delay_us, other.queue_cap_rows) == (32, 500, 8192)
