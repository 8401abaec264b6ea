"""The data plane shared by every transport: resolve a version, validate, pre-process, batch, post-process.

Routes decode the wire format and call in here; nothing in this module knows about HTTP.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from app.batching import Priority
from app.errors import InvalidInput, ModelNotFound, PayloadTooLarge, ServiceError
from app.manifest import Manifest, TensorSpec
from app.metrics import Metrics
from app.protocol import InferRequest
from app.registry import ModelRegistry, ModelVersion
from app.schemas.chat import ChatRequest
from app.schemas.ctr import CtrRequest
from app.settings import Settings
from app.tasks.chat import MessageError
from app.tasks.chat_serving import ChatServing
from app.tasks.ctr import CtrFeaturizer, FeatureError, dense_value

_Req = TypeVar("_Req", bound=BaseModel)
PLATFORM = "onnxruntime_onnx"  # every version runs its ONNX artifact through ONNX Runtime


@dataclass(frozen=True)
class RequestOptions:
    """Per-request scheduling: absolute deadline on ``time.monotonic()``, priority, id for logs."""

    deadline: float | None = None
    priority: Priority = Priority.LOW
    request_id: str = ""


class Observation:
    """Times one request and counts it by outcome and error code when the block exits."""

    def __init__(self, metrics: Metrics, endpoint: str, model: str) -> None:
        self.metrics, self.endpoint, self.model = metrics, endpoint, model
        self.version = "-"
        self.started = time.monotonic()

    def __enter__(self) -> Observation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            outcome, code = "ok", "ok"
        else:
            outcome, code = "error", exc.code if isinstance(exc, ServiceError) else "internal"
        if isinstance(exc, ModelNotFound):
            self.model = "_unknown_"  # user-chosen names must not create label series
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
    return n


def _check_tensor(spec: TensorSpec, arr: np.ndarray, datatype: str | None) -> int:
    if datatype != spec.dtype:
        raise InvalidInput(f"input {spec.name!r} must be {spec.dtype}, got {datatype}", code="datatype_mismatch")
    ok = arr.ndim == len(spec.shape) and all(d == -1 or d == a for d, a in zip(spec.shape, arr.shape, strict=True))
    if not ok:
        raise InvalidInput(f"input {spec.name!r} has shape {list(arr.shape)}, model takes {spec.shape}", code="shape_mismatch")
    return int(arr.shape[0])


def tensor_metadata(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": s.name, "datatype": s.dtype, "shape": s.shape} for s in specs]


def parse_ctr_request(body: bytes) -> CtrRequest:
    """JSON -> :class:`CtrRequest` in one pass; malformed JSON is 400, a wrong shape of document is 422."""
    return parse_task_request(CtrRequest, body)


def parse_chat_request(body: bytes) -> ChatRequest:
    """Invalid UTF-8 is its own 400 (``invalid_utf8``) so clients can tell encoding bugs from bad JSON."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"the body is not valid UTF-8 (byte {e.start})", code="invalid_utf8") from None
    return parse_task_request(ChatRequest, body)


def parse_task_request(schema: type[_Req], body: bytes) -> _Req:
    try:
        return schema.model_validate_json(body)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise InvalidInput(f"the body is not valid JSON: {first['msg']}", code="invalid_json") from None
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"{where}: {first['msg']}", code="invalid_request", status=422) from None


def merge_rows(req: CtrRequest, known: frozenset[str], dense: frozenset[str]) -> list[dict[str, Any]]:
    """One row per candidate: context overlaid by the candidate's own fields; unknown names and values refused."""
    check_fields(req.context, known, dense, "context")
    rows = []
    for i, cand in enumerate(req.candidates):
        check_fields(cand.features, known, dense, f"candidates[{i}].features")
        rows.append({**req.context, **cand.features} if req.context and cand.features else cand.features or req.context)
    return rows


_MAX_INT = 1 << 1000  # far inside float range; larger ints go through the featurizer's check (and fail there)


def check_fields(fields: Mapping[str, Any], known: frozenset[str], dense: frozenset[str], where: str) -> None:
    """Refuse unknown names, non-scalars, and dense values the featurizer would reject, before batching.

    One pass per request part; anything unusual is judged by the featurizer's own ``dense_value``.
    """
    if not known.issuperset(fields):
        unknown = sorted(set(fields) - known)[:10]
        raise InvalidInput(f"{where}: unknown features {unknown}", code="unknown_feature", status=422)
    for name, value in fields.items():
        kind = type(value)
        if kind is str or (kind is int and not -_MAX_INT < value < _MAX_INT):
            if name in dense:
                _check_dense(value, name, where)
        elif kind is float:
            if name in dense and not math.isfinite(value):
                _check_dense(value, name, where)
        elif kind is not int and value is not None:  # bool, list, dict: the featurizer would take them silently
            raise InvalidInput(f"{where}.{name}: {value!r} is not a scalar", code="invalid_feature", status=422)


def _check_dense(value: Any, name: str, where: str) -> None:
    try:
        dense_value(value, name)
    except FeatureError as e:
        raise InvalidInput(f"{where}: {e}", code="invalid_feature", status=422) from None
    except OverflowError:
        raise InvalidInput(f"{where}: dense feature {name!r} is out of range", code="invalid_feature", status=422) from None


class InferenceService:
    """One per app; owns no state beyond references to the registry, settings and metrics."""

    def __init__(self, settings: Settings, registry: ModelRegistry, metrics: Metrics) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics

    def observe(self, endpoint: str, model: str) -> Observation:
        return Observation(self.metrics, endpoint, model)

    # ---- KServe v2 ----
    async def infer(
        self, model: str, version: int | None, req: InferRequest, opts: RequestOptions, obs: Observation
    ) -> tuple[ModelVersion, dict[str, np.ndarray]]:
        """Run one v2 inference request through the version's batcher; returns the version and outputs."""
        with self.registry.lease(model, version) as mv:
            obs.version = str(mv.version)
            rows = validate_inputs(mv.manifest, req.inputs, req.datatypes)
            names = [o.name for o in mv.manifest.outputs]
            if req.outputs is not None and (unknown := {o.name for o in req.outputs} - set(names)):
                raise InvalidInput(f"unknown outputs {sorted(unknown)}; model {model} has {names}")
            opts = _with_parameters(opts, req.parameters)
            outputs = await self._submit(mv, req.inputs, rows, opts)
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
            "platform": PLATFORM,
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

    # ---- task: ad CTR ----
    async def score_ctr(self, req: CtrRequest, opts: RequestOptions, obs: Observation) -> dict[str, Any]:
        """All candidates of a request become ONE batcher item of N rows."""
        n = len(req.candidates)
        if n == 0:
            raise InvalidInput("'candidates' must not be empty", code="invalid_request", status=422)
        if n > self.settings.max_candidates:
            raise PayloadTooLarge(f"{n} candidates; at most {self.settings.max_candidates} per request", code="too_many_candidates")
        with self.registry.lease(self.settings.ctr_model, req.model_version) as mv:
            obs.version = str(mv.version)
            featurizer = mv.preprocessor
            if not isinstance(featurizer, CtrFeaturizer):
                raise ServiceError(f"model {mv.model} has no CTR pre-processing")
            rows = merge_rows(req, *_fields(featurizer))
            if mv.batcher is None or mv.prepare is None:
                raise ServiceError(f"version {mv.model}/{mv.version} cannot batch raw rows")
            # rows are featurized per batch in the worker thread, by the version's own featurizer
            outputs = await mv.batcher.submit(
                rows, n, deadline=opts.deadline, priority=opts.priority, prepare=mv.prepare
            )
        pctr = outputs[mv.manifest.outputs[0].name].reshape(-1).tolist()
        scores = [{"ad_id": c.ad_id, "pctr": p} for c, p in zip(req.candidates, pctr, strict=True)]
        return {"model": mv.model, "version": mv.version, "scores": scores}

    # ---- task: customer-service chat ----
    async def chat(self, req: ChatRequest, opts: RequestOptions, obs: Observation) -> dict[str, Any]:
        """One message = one batcher row; token ids are padded per batch, so short messages stay cheap."""
        with self.registry.lease(self.settings.chat_model, req.model_version) as mv:
            obs.version = str(mv.version)
            chat = mv.preprocessor
            if not isinstance(chat, ChatServing) or mv.batcher is None or mv.prepare is None:
                raise ServiceError(f"model {mv.model} has no chat pre-processing")
            try:
                text, ids, truncated = chat.encode(req.message)
            except MessageError as e:
                if e.code == "too_long":
                    raise PayloadTooLarge(str(e), code="message_too_long") from None
                raise InvalidInput(str(e), code=f"{e.code}_message", status=422) from None
            out = await mv.batcher.submit([ids], 1, deadline=opts.deadline, priority=opts.priority, prepare=mv.prepare)
            reply = chat.post([text], out["logits"], out["embedding"])[0]
        return {**reply.as_dict(), "truncated": truncated, "model": mv.model, "version": mv.version,
                "session_id": req.session_id}

    # ---- repository ----
    def repository_index(self, ready_only: bool = False) -> list[dict[str, str]]:
        entries = self.registry.index()
        return [e for e in entries if e["state"] == "READY"] if ready_only else entries


def _fields(featurizer: CtrFeaturizer) -> tuple[frozenset[str], frozenset[str]]:
    dense = frozenset(featurizer.dense_columns)
    return dense.union(featurizer.categorical_columns), dense


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
    return RequestOptions(deadline, priority, opts.request_id)
