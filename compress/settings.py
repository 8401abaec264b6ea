"""The offline toolkit's process settings, from the environment (``COMPRESS_`` prefix plus the shared names).

Per-run choices live in the TOML config (:mod:`compress.config`); these are the few things that depend on the
machine. Shared variables follow the service's rule (:mod:`app.settings`): the ``APP_`` name wins over the bare
one, so a publisher and the service it notifies read the same ``APP_REDIS_URL`` / ``REDIS_URL``.

Typical usage::

    compress_settings().data_dir     # read when needed: tests and callers may change the environment
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
DEFAULT_CHANNEL = "model-published"


class CompressSettings(BaseSettings):
    """Environment of ``python -m compress``; nothing here has a CLI flag except where a subcommand says so."""

    model_config = SettingsConfigDict(
        env_prefix="COMPRESS_", extra="ignore", populate_by_name=True, frozen=True, use_attribute_docstrings=True
    )

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, validation_alias=AliasChoices("DATA_DIR"))
    """Root of the public data sets; configs refer to it as ``${DATA_DIR}`` (default: ``shared/data`` beside the
    project)."""
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("APP_REDIS_URL", "REDIS_URL"))
    """Redis that receives the ``model-published`` notice and the recommendation feature store; unset: no notice
    (the service's periodic rescan still finds new versions)."""
    redis_channel: str = Field(default=DEFAULT_CHANNEL, validation_alias=AliasChoices("APP_REDIS_CHANNEL"))
    """Pub/sub channel of the ``model-published`` notice (the service's ``APP_REDIS_CHANNEL``)."""
    staging_max_age_s: float = Field(default=3600.0, gt=0)
    """Staging folders older than this are crashed publishes and are removed by the next publish."""
    progress: bool = True
    """Progress bars on a terminal (``COMPRESS_PROGRESS=0`` turns them off; never drawn when stderr is not a TTY)."""


def compress_settings() -> CompressSettings:
    """The settings as the environment says now (cheap; not cached, so tests and callers can change it)."""
    return CompressSettings()
