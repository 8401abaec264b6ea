"""The data plane shared by every transport: resolve a version, validate, pre-process, batch, post-process.

Routes decode the wire format and call in here; nothing in this module knows about HTTP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any

import numpy as np
from pydantic import BaseModel

from app import tracing
from app.batching import Priority
from app.errors import InvalidInput, ModelNotFound, ModelNotReady, ServiceError
from app.logs import RateLimitedLog
from app.manifest import Manifest, TensorSpec
from app.metrics import Metrics
from app.protocol import InferRequest
from app.registry import ModelRegistry, ModelVersion, is_synthetic
from app.request_options import RequestOptions
from app.rollout import drift
from app.rollout.answers import answered
from app.rollout.router import choose
from app.rollout.shadow import Mirror
from app.settings import Settings
from app.tasks.base import Call, Route

REJECTIONS = RateLimitedLog(logging.getLogger("app.validation"), interval_s=10.0)
"""Bad inputs are the client's problem: a warning at most every 10 s (with a count), never a line per request."""


class Observation:
    """Times one request and counts it by outcome and error code when the block exits."""

    def __init__(self, metrics: Metrics, endpoint: str, model: str) -> None:
        self.metrics, self.endpoint, self.model = metrics, endpoint, model
        self.version = "-"
        self.started = time.monotonic()

    def __enter__(self) -> Observation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            outcome, code = "ok", "ok"
        else:
            outcome, code = "error", exc.code if isinstance(exc, ServiceError) else "internal"
        if isinstance(exc, ModelNotFound):
            self.model = "_unknown_"  # user-chosen names must not create label series
        if tracing.ENABLED:
            tracing.annotate(self.model, self.version, code)
        count, latency = self.metrics.request_observers(self.endpoint, self.model, self.version, outcome, code)
        count.inc()
        latency.observe(time.monotonic() - self.started)


def validate_inputs(manifest: Manifest, inputs: Mapping[str, np.ndarray], datatypes: Mapping[str, str]) -> int:
    """Check names, datatypes and shapes against the manifest; returns the (common) batch row count."""
    declared = {s.name for s in manifest.inputs}
    if missing := declared - inputs.keys():
        raise InvalidInput(f"missing inputs {sorted(missing)}; model {manifest.name} needs {sorted(declared)}")
    if extra := inputs.keys() - declared:
        raise InvalidInput(f"unknown inputs {sorted(extra)}; model {manifest.name} takes {sorted(declared)}")
    rows = {_check_tensor(spec, inputs[spec.name], datatypes.get(spec.name)) for spec in manifest.inputs}
    if len(rows) != 1:
        raise InvalidInput(f"inputs disagree on the batch size: {sorted(rows)}", code="shape_mismatch")
    n = rows.pop()
    if n < 1:
        raise InvalidInput("the batch axis must have at least one row", code="shape_mismatch")
    for spec in manifest.inputs:  # ids outside the model's tables would fail (or wrap in) the whole batch
        b = spec.index_bounds
        arr = inputs[spec.name]
        if b is not None and arr.size:
            high = np.asarray(b.high, dtype=np.int64)
            bad = (arr < b.low) | (arr >= high)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                value, limit = int(arr[where]), int(high[where[-1] if high.size > 1 else 0])
                REJECTIONS.note(f"{manifest.name}/{manifest.version}: input {spec.name!r} id out of range")
                raise InvalidInput(
                    f"input {spec.name!r}{list(where)} = {value} is outside the model's table [{b.low}, {limit})",
                    code="index_out_of_range",
                )
    return n


def _check_tensor(spec: TensorSpec, arr: np.ndarray, datatype: str | None) -> int:
    if datatype != spec.dtype:
        raise InvalidInput(f"input {spec.name!r} must be {spec.dtype}, got {datatype}", code="datatype_mismatch")
    ok = arr.ndim == len(spec.shape) and all(d == -1 or d == a for d, a in zip(spec.shape, arr.shape, strict=True))
    if not ok:
        raise InvalidInput(
            f"input {spec.name!r} has shape {list(arr.shape)}, model takes {spec.shape}", code="shape_mismatch"
        )
    return int(arr.shape[0])


def tensor_metadata(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": s.name, "datatype": s.dtype, "shape": s.shape} for s in specs]


class InferenceService:
    """One per app; owns no state beyond references to the registry, settings and metrics."""

    def __init__(self, settings: Settings, registry: ModelRegistry, metrics: Metrics) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.drift = drift.install(settings, metrics)
        self.mirror = Mirror(
            registry,
            metrics,
            settings.rollout_max_in_flight,
            settings.rollout_timeout_ms / 1000,
            settings.rollout_shadow_min_chance,
        )

    def routed_version(self, model: str, req: Any, opts: RequestOptions) -> int | None:
        """The version a request without a pinned version goes to: the policy's canary for its share of requests
        (while READY), else None (the default: the policy's stable version, or the newest ready one)."""
        policy = self.registry.policies.get(model)
        if policy is None or policy.canary is None:
            return None
        version = choose(policy, req, opts.headers, self.mirror.rng)
        if version == policy.stable or not self.registry.version_ready(model, version):
            return None
        return version

    def observe(self, endpoint: str, model: str) -> Observation:
        return Observation(self.metrics, endpoint, model)

    def admit(self, model: str, version: int | None = None) -> AbstractContextManager[None]:
        """Admission before the body is read and parsed (every transport): raises ``Overloaded`` (503 + Retry-After)
        when the version's queue is over its time budget or its requests in progress are at their cap; otherwise
        a block that holds the request's place until it is answered. Unknown and not-ready models pass: the lease
        answers them with their own codes."""
        try:
            mv = self.registry.resolve(model, version)
        except ServiceError:
            return nullcontext()
        return nullcontext() if mv.batcher is None else mv.batcher.admit()

    # ---- KServe v2 ----
    async def infer(
        self, model: str, version: int | None, req: InferRequest, opts: RequestOptions, obs: Observation
    ) -> tuple[ModelVersion, dict[str, np.ndarray]]:
        """Run one v2 inference request through the version's batcher; returns the version and outputs."""
        pinned = version is not None
        if not pinned:
            version = self.routed_version(model, req, opts)
        with self.registry.lease(model, version) as mv:
            obs.version = str(mv.version)
            rows = validate_inputs(mv.manifest, req.inputs, req.datatypes)
            names = [o.name for o in mv.manifest.outputs]
            if req.outputs is not None and (unknown := {o.name for o in req.outputs} - set(names)):
                raise InvalidInput(f"unknown outputs {sorted(unknown)}; model {model} has {names}")
            opts = _with_parameters(opts, req.parameters)
            if tracing.ENABLED:
                tracing.mark("validate")
            outputs = await self._submit(mv, req.inputs, rows, opts)
            if tracing.ENABLED:
                tracing.skip()
            self.drift.observe_tensors(mv, outputs)
        if not pinned:
            answered(self.registry, self.mirror, model, mv.version, None, req, outputs, rows)
        return mv, outputs

    async def _submit(
        self, mv: ModelVersion, inputs: dict[str, np.ndarray], rows: int, opts: RequestOptions
    ) -> dict[str, np.ndarray]:
        if mv.batcher is None:
            raise ServiceError(f"version {mv.model}/{mv.version} has no batcher")
        return await mv.batcher.submit(inputs, rows, deadline=opts.deadline, priority=opts.priority)

    def model_metadata(self, model: str, version: int | None) -> dict[str, Any]:
        mv = self.registry.resolve(model, version)
        m = mv.manifest
        return {
            "name": model,
            "versions": [str(v) for v in self.registry.ready_versions(model)],
            "platform": mv.runtime.platform,
            **({"parameters": {"synthetic_data": True}} if is_synthetic(m) else {}),
            "inputs": tensor_metadata(m.inputs),
            "outputs": tensor_metadata(m.outputs),
        }

    def model_ready(self, model: str, version: int | None) -> bool:
        """False while loading/draining/failed; unknown models and versions still raise ``ModelNotFound``."""
        try:
            self.registry.resolve(model, version)
        except ModelNotFound:
            raise
        except ServiceError:
            return False
        return True

    # ---- task routes ----
    def model_for(self, route: Route[Any]) -> str:
        """The model behind a task route: ``APP_TASK_MODELS[<task name>]`` or the task's default."""
        task = route.owner
        return self.settings.task_models.get(task.name, task.default_model)

    async def run_task(
        self, route: Route[Any], req: BaseModel, opts: RequestOptions, obs: Observation
    ) -> dict[str, Any]:
        """The one entry point of every task route (HTTP and gRPC): lease the version, run the task's handler."""
        model = self.model_for(route)
        if not route.needs_model:
            return await route.handler(req, Call(None, None, opts, model, 0, self.registry.ctx))
        version = getattr(req, "model_version", None)
        pinned = version is not None
        if not pinned:
            version = self.routed_version(model, req, opts)
        with self.registry.lease(model, version) as mv:
            obs.version = str(mv.version)
            if not isinstance(mv.task, route.owner):
                kind = mv.manifest.preprocessing.kind if mv.manifest.preprocessing else "none"
                raise ModelNotReady(
                    f"model {model!r} (pre-processing {kind!r}) cannot serve {route.path}; "
                    f"set APP_TASK_MODELS to a {route.owner.kind} model",
                    code="wrong_task",
                )
            result = await route.handler(req, Call(mv.task, mv.batcher, opts, mv.model, mv.version, self.registry.ctx))
            if tracing.ENABLED:
                tracing.mark("postprocess")
            self.drift.observe_task(mv, req, result)
        if not pinned:
            answered(self.registry, self.mirror, model, mv.version, route, req, result)
        return result

    # ---- repository ----
    def repository_index(self, ready_only: bool = False) -> list[dict[str, str]]:
        entries = self.registry.index()
        return [e for e in entries if e["state"] == "READY"] if ready_only else entries


def _with_parameters(opts: RequestOptions, params: Mapping[str, Any]) -> RequestOptions:
    """Fold KServe request parameters ``priority`` (1 = high, or 'high'/'low') and ``timeout`` (µs) in."""
    priority, deadline = opts.priority, opts.deadline
    p = params.get("priority")
    if p is not None and p != 0:  # 0 = the default level (Triton's convention)
        if isinstance(p, bool) or p not in ("high", "low") and not (isinstance(p, int) and p > 0):
            raise InvalidInput(f"parameter priority={p!r}: use 'high', 'low' or a level >= 1", code="invalid_parameter")
        priority = Priority.HIGH if p in ("high", 1) else Priority.LOW
    t = params.get("timeout")
    if t is not None:
        if isinstance(t, bool) or not isinstance(t, int) or t <= 0:
            raise InvalidInput(f"parameter timeout={t!r} must be a positive integer (µs)", code="invalid_parameter")
        until = time.monotonic() + t / 1e6
        deadline = until if deadline is None else min(deadline, until)
    if priority is opts.priority and deadline == opts.deadline:
        return opts
    return RequestOptions(deadline, priority, opts.request_id, opts.headers)
