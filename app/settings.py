"""Service settings: environment (``APP_`` prefix, plus ``MODEL_REPO`` / ``REDIS_URL``) and CLI flags.

Precedence: CLI flag > ``APP_<NAME>`` > the bare shared name (``MODEL_REPO``, ``REDIS_URL``) > the default. The
offline toolkit (:mod:`compress.settings`) reads the shared names by the same rule, so with both ``APP_REDIS_URL``
and ``REDIS_URL`` set both halves use ``APP_REDIS_URL``. Every field is a flag (``--<name-with-dashes>``, generated
from the field) except those in :data:`ENV_ONLY`; ``docs/reference/settings.md`` is generated from the fields.

Typical usage::

    settings = Settings()                      # from the environment
    settings = Settings(model_repo="/models")  # explicit values win over the environment
    settings = settings_from_args(["--port", "9000"])
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.adaptive_limit import AdaptiveConfig

LOG = logging.getLogger("app.settings")
T = typing.TypeVar("T")
BENCHMARK_ONLY = "benchmark_only"
"""Key in ``json_schema_extra`` of switches that exist to measure an optimisation against its absence (leave on)."""


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


class ModelSettings(BaseModel):
    """Settings of one model (``APP_MODELS='{"ad-ctr": {"max_in_flight": 3, "queue_budget_ms": 40}}'``); an unset
    field falls back to the process-wide setting (and, for the queue budget, the manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    versions: VersionPolicy | None = None
    """Which versions are served, e.g. ``{"specific": [3, 4]}`` or ``{"latest": 2}``."""
    queue_budget_ms: float | None = Field(default=None, gt=0)
    """Admission budget of expected queue time (wins over the manifest's ``serving.queue_budget_ms``)."""
    max_in_flight: int | None = Field(default=None, ge=1)
    """In-progress cap per worker process (wins over ``max_in_flight``)."""
    adaptive_in_flight: bool | None = None
    """Adaptive in-progress cap on or off for this model (wins over ``adaptive_in_flight``)."""
    max_batch_rows: int | None = Field(default=None, ge=1)
    """Rows per batch (wins over ``max_batch_rows`` and the manifest's ``serving.max_batch_rows``)."""
    max_queue_delay_us: int | None = Field(default=None, ge=0)
    """How long a batch waits to fill (wins over ``max_queue_delay_us`` and the manifest)."""
    queue_cap_rows: int | None = Field(default=None, ge=1)
    """Rows the version may queue (wins over ``queue_cap_rows`` and the manifest)."""


class Settings(BaseSettings):
    """Process-wide settings; per-version batching defaults come from each manifest's ``serving`` block."""

    model_config = SettingsConfigDict(
        env_prefix="APP_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
        frozen=True,
        use_attribute_docstrings=True,
    )

    model_repo: Path = Field(default=Path("model_repo"), validation_alias=AliasChoices("APP_MODEL_REPO", "MODEL_REPO"))
    """Root of the versioned model repository (``<repo>/<model>/<version>/manifest.json``)."""
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("APP_REDIS_URL", "REDIS_URL"))
    """Optional Redis for the ``model-published`` notice; without it only the periodic rescan finds versions."""
    redis_channel: str = "model-published"
    """Pub/sub channel the publisher announces new versions on."""

    host: str = "127.0.0.1"
    """Bind address of HTTP and gRPC."""
    port: int = Field(default=8000, ge=0, le=65535)
    """HTTP port; 0 picks a free one."""
    ctr_featurize: Literal["graph", "python"] = "graph"
    """CTR featurization: inside the published ``model_raw.onnx`` (one ORT call per batch) or the reference Python
    featurizer + ``model.onnx``; versions without a ``raw_model`` file always use Python."""
    inline_batch_us: int = Field(default=200, ge=0)
    """Run batches whose measured cost is at most this many µs on the event loop instead of a worker thread
    (0 = never). Handing a batch to a thread and back costs a wake-up, a GIL hand-over and often a context
    switch each way: for sub-200 µs batches (1-row CTR, small MLPs) that is more than the work, measured 1.22x
    req/s on 1-row v2 JSON (docs/benchmarks.md). Costlier batches (100 candidates, text models) stay on threads,
    so the loop is never held longer than this."""
    coalesce_writes: bool = Field(default=True, json_schema_extra={BENCHMARK_ONLY: True})
    """Write each response's headers and body with one send (off only to compare)."""
    hot_path: bool = Field(default=True, json_schema_extra={BENCHMARK_ONLY: True})
    """Serve inference POSTs directly, skipping the framework's middleware stack (same endpoints, same behaviour;
    off only to compare)."""
    workers: int | None = Field(default=None, ge=1)
    """Worker processes (``--workers`` / ``APP_WORKERS``), each a whole service on the same port (SO_REUSEPORT);
    default: one per CPU core this process may use."""
    worker_hang_timeout_s: float = Field(default=5.0, gt=0)
    """A worker whose event loop has not turned for this long (SIGSTOP, deadlock, a native call that never
    returns) is hung: liveness answers 503 and the supervisor SIGKILLs and replaces it. Its loop beats every
    0.5 s, so a loaded machine needs a few seconds of margin; detection plus restart takes about this plus 1 s."""
    worker_start_timeout_s: float = Field(default=120.0, gt=0)
    """A new worker must beat within this long after it was spawned (imports, runtime start), else it is killed
    and replaced like a hung one. Loading models does not count: it runs beside the event loop."""
    grpc_enabled: bool = True
    """Serve gRPC (KServe v2 + task RPCs, health, reflection) next to HTTP, in the same process and event loop."""
    grpc_port: int = Field(default=8001, ge=0, le=65535)
    """gRPC port on ``host``; 0 picks a free port (logged as ``gRPC listening on HOST:PORT``)."""
    grpc_max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest gRPC request or response; bigger ones fail with RESOURCE_EXHAUSTED ("larger than max")."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """Log level of the service and uvicorn."""
    server_name: str = "shopinfer"
    """Name in the KServe v2 server metadata (``GET /v2``)."""
    access_log: bool = False
    """uvicorn access log (one line per request; costs throughput)."""
    access_log_sample: float = Field(default=1.0, gt=0, le=1)
    """Fraction of requests that get an access-log line when ``access_log`` is on (0.01 = one in a hundred)."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line (timestamp, level, logger, message, request_id, trace_id, model,
    version, code, worker) for log pipelines; ``text``: one human-readable line."""
    log_rate_interval_s: float = Field(default=10.0, ge=0)
    """Per cause (logger + message template): at most ``log_rate_burst`` lines per this many seconds, then one
    line saying how many were suppressed (0 = no limit). A Redis outage fails every request: without the limit,
    every request writes a line."""
    log_rate_burst: int = Field(default=10, ge=1)
    """Lines of one cause let through per ``log_rate_interval_s`` before suppression starts."""

    tracing_enabled: bool = False
    """OpenTelemetry traces of inference requests, exported over OTLP/HTTP (needs the ``otel`` extra)."""
    tracing_sample_ratio: float = Field(default=0.01, ge=0, le=1)
    """Fraction of root requests traced; a request with a W3C ``traceparent`` follows its caller's decision."""
    tracing_endpoint: str | None = None
    """OTLP/HTTP traces URL, e.g. ``http://otel-collector:4318/v1/traces`` (default: the exporter's,
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``localhost:4318``)."""
    tracing_service_name: str = "shopinfer"
    """``service.name`` of the exported spans."""

    admin_token: SecretStr | None = None
    """Bearer token for ``/v2/repository/models/*/load|unload``; unset disables those endpoints (403)."""

    ort_intra_op_threads: int = Field(default=1, ge=0)
    """ONNX Runtime threads inside one operator (0 = ORT default, all cores)."""
    ort_inter_op_threads: int = Field(default=1, ge=0)
    """ONNX Runtime threads running independent operators in parallel (0 = ORT default)."""
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
    models: dict[str, ModelSettings] = {}
    """Per-model settings, JSON by model name, e.g. ``{"ad-ctr": {"versions": {"specific": [3, 4]},
    "queue_budget_ms": 40, "max_in_flight": 3, "max_batch_rows": 64}}`` (fields: ``versions``, ``queue_budget_ms``,
    ``max_in_flight``, ``max_batch_rows``, ``max_queue_delay_us``, ``queue_cap_rows``); each wins over the
    process-wide setting of the same name and the manifest."""
    version_policy: dict[str, VersionPolicy] = {}
    """Deprecated: ``models.<name>.versions``. Per model, e.g. ``{"ad-ctr": {"specific": [3, 4]}}``."""

    max_batch_rows: int | None = Field(default=None, ge=1)
    """Overrides every manifest's ``serving.max_batch_rows`` when set."""
    max_queue_delay_us: int | None = Field(default=None, ge=0)
    """Overrides every manifest's ``serving.max_queue_delay_us`` (how long a batch waits to fill) when set."""
    queue_cap_rows: int | None = Field(default=None, ge=1)
    """Overrides every manifest's ``serving.queue_cap_rows`` (rows a version may queue; more is a 413) when set."""
    batch_concurrency: int = Field(default=1, ge=1)
    """Batches of one version that may run at once (like Triton's instance count)."""
    drain_timeout_s: float = Field(default=30.0, gt=0)
    """How long an old version may finish in-flight work before it is unloaded anyway."""

    rollout_max_in_flight: int = Field(default=2, ge=1)
    """Shadow and canary comparisons running at once per worker process; more are dropped (counted), never
    queued."""
    rollout_shadow_min_chance: float = Field(default=0.25, ge=0, le=1)
    """A shadow sample starts only when it is this likely to finish before the worker's next live request (at the
    recent arrival rate and the shadow's measured cost per sample); a live arrival terminates it (it is dropped),
    so a likelier-terminated start would only take CPU from the host's other processes. 0 = always start."""
    rollout_timeout_ms: int = Field(default=1000, ge=1)
    """Deadline of one comparison's request to the other version (a slower one is counted as an error)."""
    rollout_check_interval_s: float = Field(default=2.0, gt=0)
    """How often the first worker of a pod checks canaries against their policy's limits."""
    default_timeout_ms: int | None = Field(default=10_000, ge=1)
    """Deadline for requests without a ``timeout-ms`` header: nothing waits unbounded (set it empty for none)."""
    queue_budget_ms: float | None = Field(default=100.0, gt=0)
    """Admission: refuse a request (503 + Retry-After) when its expected queue time exceeds this (per model:
    ``models.<name>.queue_budget_ms``, then the manifest's ``serving.queue_budget_ms``); unset = only the row cap applies.
    100 ms: a full closed loop of 32 storefront clients sending 100-candidate requests stays admitted on two
    cores (about 60-80 ms of queue), while 3x that load is shed instead of queueing for seconds."""
    queue_budgets_ms: dict[str, float] = {}
    """Deprecated: ``models.<name>.queue_budget_ms``. Per-model queue-time budgets, e.g. ``{"ad-ctr": 40}``."""
    max_in_flight: int | None = Field(default=None, ge=1)
    """Admission: at most this many requests of one version in progress per worker process (admitted, not yet
    answered: body read, parse, queue and batch); more are refused (503 ``overloaded``) before their body is
    read. Per model: ``models.<name>.max_in_flight``. Unset = no cap. Under 3x overload it keeps the worker at its
    capacity instead of behind it: 100-candidate CTR on one core is best at 3-4 (docs/benchmarks.md, "Overload")."""
    max_in_flight_models: dict[str, int] = {}
    """Deprecated: ``models.<name>.max_in_flight``. Per-model caps, e.g. ``{"ad-ctr": 3}``."""
    adaptive_in_flight: bool = False
    """Admission: an adaptive cap on requests in progress per version and worker process, found from measured
    latency (gradient rule, ``app/adaptive_limit.py``) instead of a fixed ``max_in_flight`` picked per model
    (which, when also set, becomes its ceiling). Per model: ``models.<name>.adaptive_in_flight``. An idle worker never
    refuses. Off by default: docs/operations.md "Feature store under faults and admission" has the figures."""
    adaptive_latency_tolerance: float = Field(default=2.0, ge=1.0)
    """Adaptive cap: the latency aimed for, as a multiple of the no-load latency (the smallest recent one)."""
    adaptive_min_in_flight: int = Field(default=4, ge=1)
    """Adaptive cap: requests in progress always admitted (an idle or lightly used worker never refuses)."""
    adaptive_latency_buffer_ms: float = Field(default=2.0, ge=0)
    """Adaptive cap: latency allowed on top of ``tolerance`` x no-load (the batching delay, scheduling noise)."""
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
    drift_sample_rate: float = Field(default=0.1, ge=0, le=1)
    """Fraction of answered requests whose inputs/outputs enter the drift windows (0 = no drift monitoring)."""
    drift_rows_per_request: int = Field(default=4, ge=1)
    """Rows of one sampled request observed for drift (e.g. 4 of 100 ad candidates, spread over the request)."""
    drift_window: int = Field(default=5000, ge=10)
    """Observations kept per version and feature for drift (a sliding window, per worker process)."""
    drift_min_rows: int = Field(default=500, ge=1)
    """Observations a feature's window needs before its PSI is reported (fewer give noisy values)."""
    task_models: dict[str, str] = {}
    """Model behind each task's routes, by task name, e.g. ``{"ctr": "ad-ctr-eu"}`` (default: the task's own
    default model: ctr -> ad-ctr, chat -> chat-intent, ...)."""
    feature_store_max_users: int = Field(default=200_000, ge=1)
    """Embedded feature stores (in-process and the pod's SQLite file): users kept; beyond it the least recently
    active are dropped (Redis is bounded by its own TTL and ``maxmemory``)."""
    feature_store_max_mb: int = Field(default=512, ge=1)
    """In-process feature store: memory its histories may take (keys, packed entries and per-user overhead);
    beyond it the least recently active users are dropped. 200,000 users of 100 events take ~220 MB (RSS)."""
    feature_store_trim_interval_s: float = Field(default=5.0, gt=0)
    """Pod SQLite feature store: how often a background thread drops expired and surplus users (never on a
    request)."""

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

    @model_validator(mode="after")
    def _warn_deprecated(self) -> Settings:
        for old, new in DEPRECATED.items():
            if getattr(self, old):
                LOG.warning("APP_%s is deprecated: use APP_MODELS (%s per model)", old.upper(), new)
        return self

    def for_model(self, model: str) -> ModelSettings:
        """``model``'s entry of ``models``, with the deprecated per-model dicts filling what it leaves unset."""
        own = self.models.get(model, ModelSettings())
        return own.model_copy(
            update={
                "versions": own.versions or self.version_policy.get(model),
                "queue_budget_ms": first_set(own.queue_budget_ms, self.queue_budgets_ms.get(model)),
                "max_in_flight": first_set(own.max_in_flight, self.max_in_flight_models.get(model)),
            }
        )

    def queue_budget_for(self, model: str, manifest_ms: float | None = None) -> float | None:
        """The queue-time budget of ``model`` in seconds: settings per model, then the manifest, then the default."""
        ms = self.for_model(model).queue_budget_ms
        if ms is None:
            ms = manifest_ms if manifest_ms is not None else self.queue_budget_ms
        return None if ms is None else ms / 1000

    def max_in_flight_for(self, model: str) -> int | None:
        """The in-progress cap of ``model``: settings per model, then the default (None = no cap)."""
        cap = self.for_model(model).max_in_flight
        return cap if cap is not None else self.max_in_flight

    def adaptive_config_for(self, model: str) -> AdaptiveConfig | None:
        """The adaptive in-progress cap of ``model`` (None = off): settings per model, then the default."""
        if not first_set(self.for_model(model).adaptive_in_flight, self.adaptive_in_flight):
            return None
        return AdaptiveConfig(
            tolerance=self.adaptive_latency_tolerance, buffer_s=self.adaptive_latency_buffer_ms / 1000
        )

    def max_candidates_for(self, task: str) -> int:
        """The candidate limit of ``task`` (a task name: search, ctr...): its own, else ``max_candidates``."""
        return self.max_candidates_tasks.get(task, self.max_candidates)

    def policy_for(self, model: str) -> VersionPolicy:
        return self.for_model(model).versions or VersionPolicy(latest=self.default_latest_versions)


def first_set(*values: T | None) -> T | None:
    """The first value that is set (0 counts as set)."""
    return next((v for v in values if v is not None), None)


DEPRECATED = {
    "version_policy": "versions",
    "queue_budgets_ms": "queue_budget_ms",
    "max_in_flight_models": "max_in_flight",
}
"""Deprecated per-model dicts and the ``models.<name>`` field that replaces each (both still work)."""
ENV_ONLY: Mapping[str, str] = {
    "admin_token": "a secret: on a command line every user of the host could read it",
    **{old: f"deprecated: use --models ({new} per model)" for old, new in DEPRECATED.items()},
}
"""Settings without a CLI flag, and why."""


def flag_for(name: str) -> str | None:
    """The CLI flag of setting ``name`` (None for :data:`ENV_ONLY` ones)."""
    return None if name in ENV_ONLY else "--" + name.replace("_", "-")


def env_vars_for(name: str, field: FieldInfo, prefix: str = "APP_") -> list[str]:
    """The environment variables that set ``name``, the winning one first."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(c) for c in alias.choices]
    return [str(alias)] if isinstance(alias, str) else [prefix + name.upper()]


def _value_parser(annotation: Any) -> Callable[[str], Any]:
    """Flag text -> a value pydantic validates: JSON for dicts (as in the environment), the text otherwise."""
    kinds = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return json.loads if any(typing.get_origin(k) is dict for k in kinds) else str


def is_benchmark_only(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(BENCHMARK_ONLY))


def _first_sentence(text: str) -> str:
    return re.split(r"(?<!e\.g)(?<!i\.e)\.(?:\s|$)", " ".join(text.split()).replace("``", ""))[0]


def _parser() -> argparse.ArgumentParser:
    env_only = ", ".join(env_vars_for(n, Settings.model_fields[n])[0] for n in ENV_ONLY)
    p = argparse.ArgumentParser(
        prog="python -m app",
        description="Run the inference service. Every setting is a flag and an environment variable "
        "(flags win); see docs/reference/settings.md.",
        epilog=f"Environment only: {env_only}.",
        allow_abbrev=False,
    )
    for name, field in Settings.model_fields.items():
        flag = flag_for(name)
        if flag is None:
            continue
        envs = ", ".join(env_vars_for(name, field))
        about = _first_sentence(field.description or "")
        extra = " [benchmark only]" if is_benchmark_only(field) else ""
        help_text = f"{about} (env {envs}){extra}".replace("%", "%%")
        choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is Literal else None
        if field.annotation is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            p.add_argument(flag, type=_value_parser(field.annotation), choices=choices, help=help_text)
    return p


def cli_overrides(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The settings given as flags (worker processes re-read the environment and apply these on top)."""
    ns = _parser().parse_args(argv)
    return {k: v for k, v in vars(ns).items() if v is not None}


def settings_from_args(argv: Sequence[str] | None = None) -> Settings:
    """CLI flags override the environment, which overrides the defaults."""
    return Settings(**cli_overrides(argv))


def settings_or_exit(overrides: Mapping[str, Any]) -> Settings:
    """The settings, or exit 2 with pydantic's account of each bad value (a flag or the environment), no traceback."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        print(f"python -m app: invalid settings (CLI flags or APP_* environment):\n{e}", file=sys.stderr)
        raise SystemExit(2) from None
