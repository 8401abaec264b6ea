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


def test_per_model_settings_are_one_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "APP_MODELS", '{"ad-ctr": {"versions": {"specific": [3]}, "queue_budget_ms": 40, "max_in_flight": 3}}'
    )
    monkeypatch.setenv("APP_MAX_IN_FLIGHT", "8")
    s = Settings()
    assert s.policy_for("ad-ctr").specific == [3] and s.policy_for("other") == VersionPolicy(latest=1)
    assert s.queue_budget_for("ad-ctr", manifest_ms=70) == 0.04, "settings per model win over the manifest"
    assert s.queue_budget_for("other", manifest_ms=70) == 0.07 and s.queue_budget_for("other") == 0.1
    assert (s.max_in_flight_for("ad-ctr"), s.max_in_flight_for("other")) == (3, 8)


@pytest.mark.parametrize("value", ['{"m": {"max_batch": 3}}', '{"m": {"queue_budget_ms": 0}}', '{"m": []}'])
def test_per_model_typos_and_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("APP_MODELS", value)
    with pytest.raises(ValidationError):
        Settings()


def test_deprecated_per_model_dicts_still_work_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("APP_QUEUE_BUDGETS_MS", '{"ad-ctr": 40, "b": 50}')
    monkeypatch.setenv("APP_MAX_IN_FLIGHT_MODELS", '{"ad-ctr": 3}')
    monkeypatch.setenv("APP_MODELS", '{"b": {"queue_budget_ms": 20}}')
    with caplog.at_level("WARNING", logger="app.settings"):
        s = Settings()
    assert s.queue_budget_for("ad-ctr") == 0.04 and s.max_in_flight_for("ad-ctr") == 3
    assert s.queue_budget_for("b") == 0.02, "APP_MODELS wins over the deprecated dict"
    warned = caplog.text
    assert "APP_QUEUE_BUDGETS_MS is deprecated" in warned and "APP_MAX_IN_FLIGHT_MODELS" in warned, warned


def test_every_setting_is_a_flag_or_documented_env_only() -> None:
    from app.settings import ENV_ONLY, _parser, flag_for

    flags = {opt for action in _parser()._actions for opt in action.option_strings}
    for name in Settings.model_fields:
        flag = flag_for(name)
        assert (flag in flags) if flag is not None else (name in ENV_ONLY), f"{name}: flag {flag}, have {flags}"
    assert flag_for("admin_token") is None and "--admin-token" not in flags, "the secret must not be a flag"


def test_generated_flags_parse_like_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_MAX_CANDIDATES", "10")
    s = settings_from_args(
        ["--max-candidates", "20", "--no-grpc-enabled", "--models", '{"m": {"max_in_flight": 2}}',
         "--queue-budget-ms", "", "--ctr-featurize", "python", "--task-models", '{"ctr": "ad-ctr-eu"}']
    )  # fmt: skip
    assert (s.max_candidates, s.grpc_enabled, s.max_in_flight_for("m")) == (20, False, 2)
    assert (s.queue_budget_ms, s.ctr_featurize, s.task_models) == (None, "python", {"ctr": "ad-ctr-eu"})
    with pytest.raises(SystemExit):
        settings_from_args(["--ctr-featurize", "gpu"])
    with pytest.raises(SystemExit):
        settings_from_args(["--max-cand", "5"])  # no abbreviations: a prefix would bind to a future setting


def test_redis_url_rule_is_the_same_in_both_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    from compress.settings import compress_settings

    monkeypatch.setenv("REDIS_URL", "redis://bare:6379/0")
    assert Settings().redis_url == compress_settings().redis_url == "redis://bare:6379/0"
    monkeypatch.setenv("APP_REDIS_URL", "redis://prefixed:6379/0")
    assert Settings().redis_url == compress_settings().redis_url == "redis://prefixed:6379/0"
    monkeypatch.setenv("APP_REDIS_CHANNEL", "published-eu")
    assert Settings().redis_channel == compress_settings().redis_channel == "published-eu"


def test_bad_values_exit_2_naming_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    from app.settings import cli_overrides, settings_or_exit

    with pytest.raises(SystemExit) as e:
        settings_or_exit(cli_overrides(["--port", "70000"]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "port" in err and "65535" in err, err
