"""Settings from the environment (APP_ prefix plus MODEL_REPO / REDIS_URL) and CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings, VersionPolicy, settings_from_args


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("APP_") or key in ("MODEL_REPO", "REDIS_URL"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = Settings()
    assert s.model_repo == Path("model_repo") and s.port == 8000 and s.redis_url is None
    assert s.rescan_interval_s == 2.0 and s.admin_token is None and s.required_models is None
    assert s.policy_for("any") == VersionPolicy(latest=1)


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_REPO", "/models")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("APP_PORT", "9001")
    monkeypatch.setenv("APP_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("APP_REQUIRED_MODELS", "ad-ctr, other")
    monkeypatch.setenv("APP_VERSION_POLICY", '{"ad-ctr": {"specific": [3, 4]}, "b": {"latest": 2}}')
    monkeypatch.setenv("APP_MAX_QUEUE_DELAY_US", "0")
    s = Settings()
    assert s.model_repo == Path("/models") and s.redis_url == "redis://r:6379/0" and s.port == 9001
    assert s.admin_token is not None and s.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.required_models == ["ad-ctr", "other"]
    assert s.policy_for("ad-ctr").specific == [3, 4] and s.policy_for("b").latest == 2
    assert s.max_queue_delay_us == 0


def test_prefixed_names_win_over_bare_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_REPO", "/bare")
    monkeypatch.setenv("APP_MODEL_REPO", "/prefixed")
    assert Settings().model_repo == Path("/prefixed")


def test_cli_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "9001")
    s = settings_from_args(["--port", "9100", "--model-repo", "/r", "--required-models", "a,b", "--log-level", "debug"])
    assert (s.port, s.model_repo, s.required_models, s.log_level) == (9100, Path("/r"), ["a", "b"], "debug")


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("APP_PORT", "70000"),
        ("APP_RESCAN_INTERVAL_S", "0"),
        ("APP_LOG_LEVEL", "loud"),
        ("APP_VERSION_POLICY", '{"m": {"latest": 1, "specific": [1]}}'),
        ("APP_VERSION_POLICY", '{"m": {}}'),
        ("APP_VERSION_POLICY", '{"m": {"specific": [0]}}'),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError):
        Settings()
