"""The offline toolkit's settings: one object read from the environment, used by config paths, publish and notify."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.config import resolve_path
from compress.errors import PublishError
from compress.publish import staging_max_age_s
from compress.settings import DEFAULT_DATA_DIR, compress_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith(("COMPRESS_", "APP_REDIS")) or key in ("DATA_DIR", "REDIS_URL"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = compress_settings()
    assert (s.data_dir, s.redis_url, s.redis_channel) == (DEFAULT_DATA_DIR, None, "model-published")
    assert (s.staging_max_age_s, s.progress) == (3600.0, True)


def test_data_dir_feeds_config_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_path("${DATA_DIR}/ctr/x.txt") == DEFAULT_DATA_DIR / "ctr" / "x.txt"
    monkeypatch.setenv("DATA_DIR", "/data")
    assert resolve_path("${DATA_DIR}/ctr/x.txt") == Path("/data/ctr/x.txt")


def test_compress_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPRESS_STAGING_MAX_AGE_S", "60")
    monkeypatch.setenv("COMPRESS_PROGRESS", "0")
    s = compress_settings()
    assert (s.staging_max_age_s, s.progress, staging_max_age_s()) == (60.0, False, 60.0)


def test_a_bad_staging_age_is_a_publish_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPRESS_STAGING_MAX_AGE_S", "soon")
    with pytest.raises(PublishError, match="COMPRESS_STAGING_MAX_AGE_S"):
        staging_max_age_s()
