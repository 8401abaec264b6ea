"""Service settings: environment (``APP_`` prefix, plus ``MODEL_REPO`` / ``REDIS_URL``) and CLI flags.

Typical usage::

    settings = Settings()                      # from the environment
    settings = Settings(model_repo="/models")  # explicit values win over the environment
    settings = settings_from_args(["--port", "9000"])
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class VersionPolicy(BaseModel):
    """Which versions of one model are served: the newest ``latest`` ones, or exactly ``specific``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latest: int | None = Field(default=None, ge=1)
    """Serve the newest N healthy versions (the newest one is the default)."""
    specific: list[int] | None = None
    """Serve exactly these versions (pinned); the highest loaded one is the default."""

    @model_validator(mode="after")
    def _one_kind(self) -> VersionPolicy:
        if (self.latest is None) == (self.specific is None):
            raise ValueError("a version policy needs exactly one of 'latest' or 'specific'")
        if self.specific is not None and (not self.specific or any(v < 1 for v in self.specific)):
            raise ValueError("'specific' must list positive version numbers")
        return self


class Settings(BaseSettings):
    """Process-wide settings; per-version batching defaults come from each manifest's ``serving`` block."""

    model_config = SettingsConfigDict(
        env_prefix="APP_", extra="ignore", populate_by_name=True, validate_default=True, frozen=True
    )

    model_repo: Path = Field(default=Path("model_repo"), validation_alias=AliasChoices("APP_MODEL_REPO", "MODEL_REPO"))
    """Root of the versioned model repository (``<repo>/<model>/<version>/manifest.json``)."""
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("APP_REDIS_URL", "REDIS_URL"))
    """Optional Redis for the ``model-published`` notice; without it only the periodic rescan finds versions."""
    redis_channel: str = "model-published"
    """Pub/sub channel the publisher announces new versions on."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    ctr_featurize: Literal["graph", "python"] = "graph"
    """CTR featurization: inside the published ``model_raw.onnx`` (one ORT call per batch) or the reference Python
    featurizer + ``model.onnx``; versions without a ``raw_model`` file always use Python."""
    inline_batch_us: int = Field(default=200, ge=0)
    """Run batches whose measured cost is at most this many µs on the event loop instead of a worker thread
    (0 = never). Handing a batch to a thread and back costs a wake-up, a GIL hand-over and often a context
    switch each way: for sub-200 µs batches (1-row CTR, small MLPs) that is more than the work, measured 1.22x
    req/s on 1-row v2 JSON (docs/benchmarks.md). Costlier batches (100 candidates, text models) stay on threads,
    so the loop is never held longer than this."""
    coalesce_writes: bool = True
    """Write each response's headers and body with one send (off only to compare)."""
    hot_path: bool = True
    """Serve inference POSTs directly, skipping the framework's middleware stack (same endpoints, same behaviour;
    off only to compare)."""
    workers: int | None = Field(default=None, ge=1)
    """Worker processes (``--workers`` / ``APP_WORKERS``), each a whole service on the same port (SO_REUSEPORT);
    default: one per CPU core this process may use."""
    grpc_enabled: bool = True
    """Serve gRPC (KServe v2 + task RPCs, health, reflection) next to HTTP, in the same process and event loop."""
    grpc_port: int = Field(default=8001, ge=0, le=65535)
    """gRPC port on ``host``; 0 picks a free port (logged as ``gRPC listening on HOST:PORT``)."""
    grpc_max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest gRPC request or response; bigger ones fail with RESOURCE_EXHAUSTED ("larger than max")."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    server_name: str = "shopinfer"
    access_log: bool = False
    """uvicorn access log (one line per request; costs throughput)."""

    admin_token: SecretStr | None = None
    """Bearer token for ``/v2/repository/models/*/load|unload``; unset disables those endpoints (403)."""

    ort_intra_op_threads: int = Field(default=1, ge=0)
    """ONNX Runtime threads inside one operator (0 = ORT default, all cores)."""
    ort_inter_op_threads: int = Field(default=1, ge=0)
    ort_allow_spinning: bool = False
    """Let idle ORT threads spin; faster on dedicated cores, harmful when the cores are shared."""
    ort_use_tensorrt: bool = False
    """Try the TensorRT execution provider when ORT offers it (CUDA is used whenever available)."""

    rescan_interval_s: float = Field(default=2.0, gt=0)
    """Period of the repository rescan; the Redis notice triggers one sooner."""
    required_models: Annotated[list[str] | None, NoDecode] = None
    """Models that must be warm before ``/v2/health/ready`` is 200 (default: every model found at startup)."""
    default_latest_versions: int = Field(default=1, ge=1)
    """Version policy for models not named in ``version_policy``: serve the newest N."""
    version_policy: dict[str, VersionPolicy] = {}
    """Per model, e.g. ``{"ad-ctr": {"specific": [3, 4]}}`` or ``{"ad-ctr": {"latest": 2}}``."""

    max_batch_rows: int | None = Field(default=None, ge=1)
    """Overrides every manifest's ``serving.max_batch_rows`` when set."""
    max_queue_delay_us: int | None = Field(default=None, ge=0)
    queue_cap_rows: int | None = Field(default=None, ge=1)
    batch_concurrency: int = Field(default=1, ge=1)
    """Batches of one version that may run at once (like Triton's instance count)."""
    drain_timeout_s: float = Field(default=30.0, gt=0)
    """How long an old version may finish in-flight work before it is unloaded anyway."""

    default_timeout_ms: int | None = Field(default=10_000, ge=1)
    """Deadline for requests without a ``timeout-ms`` header: nothing waits unbounded (set it empty for none)."""
    queue_budget_ms: float | None = Field(default=100.0, gt=0)
    """Admission: refuse a request (503 + Retry-After) when its expected queue time exceeds this (per model:
    ``queue_budgets_ms``, then the manifest's ``serving.queue_budget_ms``); unset = only the row cap applies.
    100 ms: a full closed loop of 32 storefront clients sending 100-candidate requests stays admitted on two
    cores (about 60-80 ms of queue), while 3x that load is shed instead of queueing for seconds."""
    queue_budgets_ms: dict[str, float] = {}
    """Per-model queue-time budgets, e.g. ``{"ad-ctr": 40}``."""
    max_in_flight: int | None = Field(default=None, ge=1)
    """Admission: at most this many requests of one version in progress per worker process (admitted, not yet
    answered: body read, parse, queue and batch); more are refused (503 ``overloaded``) before their body is
    read. Per model: ``max_in_flight_models``. Unset = no cap. Under 3x overload it keeps the worker at its
    capacity instead of behind it: 100-candidate CTR on one core is best at 3-4 (docs/reliability.md)."""
    max_in_flight_models: dict[str, int] = {}
    """Per-model caps, e.g. ``{"ad-ctr": 3}``."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Bodies are parsed on the event loop: the limit bounds what one request can stall (1,000 full CTR
    candidates are ~0.5 MB)."""
    max_candidates: int = Field(default=1000, ge=1)
    """Candidates one request may score, for tasks without their own limit in ``max_candidates_tasks``."""
    max_candidates_tasks: dict[str, int] = {"search": 200}
    """Per-task candidate limits, by task name: each sized to what the task's model scores within the default
    deadline on one CPU core. Search encodes each candidate's text with a transformer: 1,000 ran past the 10 s
    default deadline (over 10 ms a candidate on a shared core) while smaller searches were refused behind it; 200
    are about 2 s at that rate. CTR rows are cheap (1,000 in a few ms), so CTR keeps ``max_candidates``. More: 413
    ``too_many_candidates``, before any encoding."""
    task_models: dict[str, str] = {}
    """Model behind each task's routes, by task name, e.g. ``{"ctr": "ad-ctr-eu"}`` (default: the task's own
    default model: ctr -> ad-ctr, chat -> chat-intent, ...)."""

    # ---- hostile clients: limits on the request head, enforced by the HTTP protocol before any parsing ----
    max_header_fields: int = Field(default=100, ge=1)
    """Header fields one request may carry; more get 431 ``headers_too_large`` (browsers and clients send 5-30)."""
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    """Bytes of one request head (request line and headers); more get 431 ``headers_too_large`` as soon as they
    arrive, so a huge header costs neither parse time nor memory."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """Time a client has to send a request head, counted from connect (or from the end of the previous
    response on a keep-alive connection); a slower one gets 408 ``header_timeout`` and is closed, a silent one
    is closed."""

    @field_validator("required_models", mode="before")
    @classmethod
    def _split_models(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [m.strip() for m in v.split(",") if m.strip()]
        return v

    @field_validator("default_timeout_ms", "queue_budget_ms", "max_in_flight", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    def queue_budget_for(self, model: str, manifest_ms: float | None = None) -> float | None:
        """The queue-time budget of ``model`` in seconds: settings per model, then the manifest, then the default."""
        ms = self.queue_budgets_ms.get(model, manifest_ms if manifest_ms is not None else self.queue_budget_ms)
        return None if ms is None else ms / 1000

    def max_in_flight_for(self, model: str) -> int | None:
        """The in-progress cap of ``model``: settings per model, then the default (None = no cap)."""
        return self.max_in_flight_models.get(model, self.max_in_flight)

    def max_candidates_for(self, task: str) -> int:
        """The candidate limit of ``task`` (a task name: search, ctr...): its own, else ``max_candidates``."""
        return self.max_candidates_tasks.get(task, self.max_candidates)

    def policy_for(self, model: str) -> VersionPolicy:
        return self.version_policy.get(model) or VersionPolicy(latest=self.default_latest_versions)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app", description="Run the inference service.")
    p.add_argument("--model-repo", help="model repository root (env MODEL_REPO / APP_MODEL_REPO)")
    p.add_argument("--host", help="bind address (env APP_HOST)")
    p.add_argument("--port", type=int, help="port (env APP_PORT)")
    p.add_argument("--grpc-port", type=int, help="gRPC port, 0 = a free one (env APP_GRPC_PORT)")
    p.add_argument("--redis-url", help="redis://host:port/db for the model-published notice (env REDIS_URL)")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--rescan-interval-s", type=float)
    p.add_argument("--required-models", help="comma-separated model names that gate readiness")
    p.add_argument("--max-queue-delay-us", type=int)
    p.add_argument("--max-batch-rows", type=int)
    p.add_argument("--ort-intra-op-threads", type=int)
    p.add_argument("--workers", type=int, help="worker processes (env APP_WORKERS; default: one per core)")
    return p


def cli_overrides(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The settings given as flags (worker processes re-read the environment and apply these on top)."""
    ns = _parser().parse_args(argv)
    return {k: v for k, v in vars(ns).items() if v is not None}


def settings_from_args(argv: Sequence[str] | None = None) -> Settings:
    """CLI flags override the environment, which overrides the defaults."""
    return Settings(**cli_overrides(argv))
