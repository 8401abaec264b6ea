"""The task interface: everything task-specific about a ``/v1/...`` endpoint lives in one :class:`Task` subclass.

The service, registry and HTTP/gRPC layers know no task by name. A task class declares

* ``name`` and ``kind`` — its task id, both: the settings key (``APP_TASK_MODELS``) and the manifest's
  ``preprocessing.kind`` it serves (``ctr``); the registry loads a version's state with
  ``TaskClass.load(files, ctx)``, reading aux files **by manifest role**;
* ``default_model`` — the model it serves unless settings name another;
* ``routes`` — its endpoints: request/response schemas, docs, and an async ``handler(req, call)`` that validates
  the request against the loaded version (bad input never enters a batch), submits rows with ``call.submit`` and
  post-processes the outputs;
* ``compare(reference, candidate)`` — how two answers to the same request agree (shadow traffic, canaries);
* ``prepare(rows)`` — the batch hook, run in the version's worker thread: raw rows of a whole batch -> tensors.
  Keys of the returned dict that start with ``_`` are per-row side outputs (not model inputs): the batcher hands
  them back with the model outputs, sliced per item.

Typical task::

    class EchoTask(Task):
        kind = name = "echo"
        default_model = "echo"
        routes = (Route("/v1/echo", "echo", EchoRequest, EchoResponse, handle, summary="Echo"),)

        @classmethod
        def load(cls, files: VersionFiles, ctx: TaskContext) -> EchoTask: ...
        def prepare(self, rows: list[Any]) -> Tensors: ...

Tasks are found by :mod:`app.tasks.registry` (built-ins plus the ``shopinfer.tasks`` entry-point group).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from app import tracing
from app.errors import InvalidInput, ServiceError
from app.rollout.compare import Comparison, max_abs_diff

if TYPE_CHECKING:
    from app.batching import DynamicBatcher
    from app.manifest import Manifest
    from app.metrics import Metrics
    from app.request_options import RequestOptions
    from app.settings import Settings

Tensors = dict[str, np.ndarray]
InferFn = Callable[[Tensors], Tensors]
Req = TypeVar("Req", bound=BaseModel)
T = TypeVar("T", bound="Task")
Handler = Callable[[Any, "Call[Any]"], Awaitable[dict[str, Any]]]


class TaskLoadError(Exception):
    """A version's task state cannot be loaded (missing aux role, wrong kind): the version stays UNAVAILABLE."""


@dataclass(frozen=True)
class VersionFiles:
    """A verified version folder and its manifest; aux files are found by role, never by file name."""

    dir: Path
    manifest: Manifest

    def aux(self, role: str) -> Path:
        try:
            return self.dir / self.manifest.aux(role).path
        except KeyError as e:
            raise TaskLoadError(str(e).strip("'\"")) from None

    def has(self, role: str) -> bool:
        return any(f.role == role for f in self.manifest.aux_files)

    def state(self) -> Path:
        """The pre-processing state file the manifest names."""
        if self.manifest.preprocessing is None:
            raise TaskLoadError(f"version {self.manifest.name}/{self.manifest.version} has no preprocessing block")
        return self.dir / self.manifest.preprocessing.path


class TaskContext:
    """Process-wide things a task may need: settings, metrics, and shared resources (e.g. one feature store)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._resources: dict[str, Any] = {}

    def resource(self, name: str, factory: Callable[[], Any]) -> Any:
        """Get or create a shared resource; ones with a ``close()`` are closed at shutdown."""
        if name not in self._resources:
            self._resources[name] = factory()
        return self._resources[name]

    def close(self) -> None:
        for res in self._resources.values():
            close = getattr(res, "close", None)
            if callable(close):
                close()
        self._resources.clear()


class Call(Generic[T]):
    """One request's handle on the leased version: its task state, scheduling options and batcher."""

    __slots__ = ("_task", "_batcher", "opts", "model", "version", "ctx")

    def __init__(
        self,
        task: T | None,
        batcher: DynamicBatcher | None,
        opts: RequestOptions,
        model: str,
        version: int,
        ctx: TaskContext,
    ) -> None:
        self._task, self._batcher, self.opts = task, batcher, opts
        self.model, self.version, self.ctx = model, version, ctx

    @property
    def task(self) -> T:
        if self._task is None:
            raise ServiceError(f"this route of model {self.model} runs without a loaded version")
        return self._task

    async def submit(self, rows: list[Any], n_rows: int | None = None) -> Tensors:
        """Queue ``rows`` (already validated) as one item of ``n_rows`` batch rows; the task's ``prepare`` turns
        the rows of the whole batch into tensors in the worker thread. Returns this item's output rows."""
        return await self._queue(rows, len(rows) if n_rows is None else n_rows, self.task.prepare)

    async def submit_tensors(self, tensors: Tensors, n_rows: int) -> Tensors:
        """Queue one item of already-built model inputs (``n_rows`` rows each); the batcher concatenates it with
        the other items' tensors of the same names and shapes. Returns this item's output rows."""
        return await self._queue(tensors, n_rows, None)

    async def _queue(self, item: Any, n_rows: int, prepare: Callable[[list[Any]], Tensors] | None) -> Tensors:
        if self._batcher is None:
            raise ServiceError(f"version {self.model}/{self.version} has no batcher")
        if tracing.ENABLED:
            tracing.mark("validate")
        out = await self._batcher.submit(
            item,
            n_rows,
            deadline=self.opts.deadline,
            priority=self.opts.priority,
            prepare=prepare,
            preemptible=self.opts.preemptible,
        )
        if tracing.ENABLED:
            tracing.skip()  # queue and batch spans come from the batcher
        return out


def spread(n: int, limit: int) -> range:
    """At most ``limit`` indices spread evenly over ``n`` rows (drift observes a few rows of a long request)."""
    step = max(1, -(-n // limit))
    return range(0, n, step)


def parse_json(schema: type[Req], body: bytes) -> Req:
    """JSON -> ``schema`` in one pass; malformed JSON is 400 ``invalid_json``, a wrong document 422."""
    try:
        return schema.model_validate_json(body)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise InvalidInput(f"the body is not valid JSON: {first['msg']}", code="invalid_json") from None
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"{where}: {first['msg']}", code="invalid_request", status=422) from None


def validate_doc(schema: type[Req], doc: object) -> Req:
    """A decoded JSON document -> ``schema``, failures worded and coded as :func:`parse_json`'s (422
    ``invalid_request``), for routes that decode their bodies themselves."""
    try:
        return schema.model_validate(doc)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"{where}: {first['msg']}", code="invalid_request", status=422) from None


def parse_utf8_json(schema: type[Req], body: bytes) -> Req:
    """Like :func:`parse_json`, but invalid UTF-8 is its own 400 (``invalid_utf8``): encoding bugs are not JSON bugs."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"the body is not valid UTF-8 (byte {e.start})", code="invalid_utf8") from None
    return parse_json(schema, body)


@dataclass(frozen=True)
class Route(Generic[Req]):
    """One task endpoint; the route factory mounts it with the same timing, limits, errors and metrics as all."""

    path: str
    endpoint: str
    """Metrics label (``inference_requests{endpoint=...}``)."""
    request: type[Req]
    response: type[BaseModel]
    handler: Handler
    summary: str
    description: str = ""
    examples: Mapping[str, Any] = field(default_factory=dict)
    """Named request examples for the OpenAPI document."""
    response_example: Mapping[str, Any] | None = None
    """An example answer for the OpenAPI document."""
    errors: Mapping[int, str] = field(default_factory=dict)
    """Documented error responses: status -> the codes it carries."""
    utf8_check: bool = False
    """Answer invalid UTF-8 with ``invalid_utf8`` before JSON parsing (free-text tasks)."""
    needs_model: bool = True
    """False for routes that work without a loaded version (e.g. event ingestion)."""
    task: type[Task] | None = None
    """Set by :class:`Task` when the class is defined."""
    parser: Callable[[bytes], Any] | None = None
    """The body's own decoder, for a route that also takes bodies other than ``request`` (raising
    :class:`InvalidInput` like :func:`parse_json`); default: ``request`` parsed by pydantic."""
    alternatives: tuple[type[BaseModel], ...] = ()
    """Other bodies ``parser`` accepts, for the OpenAPI document (``oneOf`` with ``request``)."""

    def parse(self, body: bytes) -> Any:
        if self.parser is not None:
            return self.parser(body)
        return parse_utf8_json(self.request, body) if self.utf8_check else parse_json(self.request, body)

    @property
    def owner(self) -> type[Task]:
        if self.task is None:
            raise RuntimeError(f"route {self.path} is not declared on a Task class")
        return self.task


class Task(ABC):
    """Loaded task state of one model version (see the module docstring)."""

    kind: ClassVar[str]
    name: ClassVar[str]
    default_model: ClassVar[str]
    routes: ClassVar[tuple[Route[Any], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.routes = tuple(dataclasses.replace(r, task=cls) for r in cls.routes)

    @classmethod
    @abstractmethod
    def load(cls: type[T], files: VersionFiles, ctx: TaskContext) -> T:
        """Load this version's task state from its aux files (loader thread); raise on anything missing."""

    def prepare(self, rows: list[Any]) -> Tensors:
        """Worker thread: the rows of a whole batch -> model inputs (plus ``_``-prefixed per-row side outputs)."""
        raise NotImplementedError(f"{type(self).__name__} does not batch raw rows")

    def infer_fn(self, runtime_infer: InferFn) -> InferFn:
        """What the batcher calls with ``prepare``'s tensors: the version's runtime, unless the task runs a graph
        of its own (e.g. featurization fused into the model, fed raw values)."""
        return runtime_infer

    @classmethod
    def compare(cls, reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> Comparison:
        """Two answers to the same request (route handler results, or raw output tensors): how far the
        candidate agrees with the reference. Shadow traffic and canary limits use it; the default, for raw KServe
        models, is the largest absolute output difference."""
        return max_abs_diff(reference, candidate)

    def drift_rows(self, req: Any, result: Mapping[str, Any], limit: int) -> list[Mapping[str, Any]]:
        """What drift monitoring observes of one answered request: at most ``limit`` rows, each mapping the names
        of the version's reference features (``manifest.drift``) to live values; an input left out counts as a
        missing value, an output left out is not observed. Called for a sample of requests, after the answer is built. The default observes nothing
        here: KServe v2 answers still feed the output features recorded with a tensor name (raw models: outputs
        only)."""
        return []

    def warmup(self) -> None:  # noqa: B027 - optional hook
        """Loader thread, after the runtime's own warm-up: exercise ``prepare`` once so the first request is warm."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """The version is unloaded: release what ``load`` acquired."""
