"""OpenTelemetry tracing of inference requests: off by default, and then one flag check per step.

A traced request gets a SERVER span (W3C ``traceparent`` from HTTP headers or gRPC metadata continues the
caller's trace) with children laid end to end: ``parse`` (body read and decode), ``validate`` (task checks, up to
queueing), ``queue`` (waiting for a batch), ``postprocess`` (after the batch, until the answer). The ``batch``
span runs once per batch, **linked** to every request span it served, with ``feature_store.read`` as its child
where the task reads one. Spans are recorded with explicit start/end times from marks taken on the way, so a
request holds no context manager open and the batcher only keeps a span context per traced item.

Root requests are sampled here (``random() < ratio``) before any SDK call: an unsampled request costs one
``random()`` and a context-variable read per step, and creates no span, context or attribute. A sampled
``traceparent`` is always followed, an unsampled one never. Since that decision is final and every span's start
and end are known when it is recorded, spans do not go through the SDK's ``Tracer.start_span`` (a sampler pass,
span limits, two locks and a copy per span: about 5x the cost of building the finished span): each one is
built finished, as the SDK's ``ReadableSpan``, with ids from the provider's id generator, and handed to the
provider's span processors (their ``on_end``; ``on_start`` is not called, as no span is ever open). The SDK
names the hot functions use are bound once by :func:`install` (an ``import`` inside a function costs about a
microsecond per call).

Typical usage::

    if tracing.ENABLED:
        tracing.mark("parse")        # a child span from the previous mark (or the request start) to now
"""

from __future__ import annotations

import contextvars
import functools
import logging
import random
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from app.logs import TRACE_ID

if TYPE_CHECKING:
    from app.settings import Settings

LOG = logging.getLogger(__name__)

ENABLED = False
"""True once a tracer is installed; every call site checks it first (the whole cost when tracing is off)."""

_processor: Any = None  # the provider's span processors: every span is handed to them finished (see below)
_provider: Any = None
_ratio = 1.0
_api: Any = None  # the ``opentelemetry.trace`` module once installed (optional dependency: imported lazily)
_propagator: Any = None
_span: Any = None  # the SDK's ``ReadableSpan`` class
_resource: Any = None
_scope: Any = None
_span_id: Callable[[], int] = int
_trace_id: Callable[[], int] = int
_SAMPLED: Any = None
_SERVER: Any = None
_INTERNAL: Any = None
_UNSET: Any = None
_OFFSET_NS = time.time_ns() - time.monotonic_ns()  # the batcher's monotonic stamps -> wall-clock ns


class RequestTrace:
    """One sampled request: its span's identity and attributes (the span is recorded when the request ends), and
    the time of the last mark (where the next child span starts)."""

    __slots__ = ("name", "context", "remote", "start_ns", "last_ns", "attributes")

    def __init__(self, name: str, context: Any, remote: Any, start_ns: int, attributes: dict[str, Any]) -> None:
        self.name, self.context, self.remote = name, context, remote
        self.start_ns = self.last_ns = start_ns
        self.attributes = attributes


CURRENT: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar("trace_request", default=None)
_BATCH: contextvars.ContextVar[Any] = contextvars.ContextVar("trace_batch", default=None)


def configure(settings: Settings) -> None:
    """Install the OTLP/HTTP exporter when ``APP_TRACING_ENABLED`` (once per process; needs the ``otel`` extra)."""
    if not settings.tracing_enabled or ENABLED:
        return
    install(otlp_provider(settings.tracing_service_name, settings.tracing_endpoint), settings.tracing_sample_ratio)
    LOG.info("tracing on: %.3g of root requests, OTLP/HTTP to %s", _ratio, settings.tracing_endpoint or "the default")


def otlp_provider(service_name: str, endpoint: str | None) -> Any:
    """The provider :func:`configure` installs: a batch span processor, OTLP/HTTP to ``endpoint`` (None: the
    exporter's default). Its sampler samples everything (:func:`start_request` has decided already)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    class _Resource(Resource):  # immutable: the exporter hashes it per span (a JSON dump each time) to group spans
        @functools.cached_property
        def _hash(self) -> int:
            return super().__hash__()

        def __hash__(self) -> int:
            return self._hash

    created = Resource.create({"service.name": service_name})
    resource = _Resource(created.attributes, created.schema_url)
    provider = TracerProvider(resource=resource, sampler=ALWAYS_ON)
    exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def install(provider: Any, ratio: float = 1.0) -> None:
    """Trace with ``provider`` (an SDK ``TracerProvider``: tests pass one with an in-memory exporter); its span
    processors receive every span finished."""
    global ENABLED, _processor, _provider, _ratio, _api, _propagator, _span, _resource, _scope, _span_id, _trace_id
    global _SAMPLED, _SERVER, _INTERNAL, _UNSET
    import opentelemetry.trace
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _api, _propagator, _span = opentelemetry.trace, TraceContextTextMapPropagator(), ReadableSpan
    _provider, _ratio, _processor = provider, ratio, provider._active_span_processor
    _resource, _scope = provider.resource, InstrumentationScope("shopinfer")
    _span_id, _trace_id = provider.id_generator.generate_span_id, provider.id_generator.generate_trace_id
    _SAMPLED = _api.TraceFlags(_api.TraceFlags.SAMPLED)
    _SERVER, _INTERNAL, _UNSET = _api.SpanKind.SERVER, _api.SpanKind.INTERNAL, _api.Status(_api.StatusCode.UNSET)
    ENABLED = True


def flush() -> None:
    """Export the finished spans still queued now (benchmarks charge the export to the requests that made it)."""
    if _provider is not None:
        _provider.force_flush()


def shutdown() -> None:
    """Flush and stop (the lifespan's end); tracing is off afterwards."""
    provider = uninstall()
    if provider is not None:
        provider.shutdown()


def uninstall() -> Any:
    """Tracing off, the provider left running and returned (benchmarks switch between installed providers)."""
    global ENABLED, _processor, _provider
    provider, ENABLED, _processor, _provider = _provider, False, None, None
    return provider


def start_request(name: str, headers: Mapping[str, str] | None, request_id: str) -> RequestTrace | None:
    """The request's span if it is sampled (it becomes :data:`CURRENT` for this task), else None."""
    if not headers or "traceparent" not in headers:
        return _begin(name, None, request_id) if random.random() < _ratio else None
    context = _followed(headers)
    return None if context is None else _begin(name, context, request_id)


def start_http(raw: Sequence[tuple[bytes, bytes]], name: Callable[[], str], request_id: str) -> RequestTrace | None:
    """:func:`start_request` for raw ASGI headers: an unsampled request without ``traceparent`` costs one scan of
    the header names and one ``random()`` (no header dict, no span name)."""
    for key, _ in raw:
        if key == b"traceparent":
            context = _followed(http_headers(raw) or {})
            return None if context is None else _begin(name(), context, request_id)
    return _begin(name(), None, request_id) if random.random() < _ratio else None


def _followed(headers: Mapping[str, str]) -> Any:
    """The caller's span context when its ``traceparent`` says sampled, else None (the caller decided)."""
    remote = _api.get_current_span(_propagator.extract(headers)).get_span_context()
    return remote if remote.trace_flags.sampled else None


def _begin(name: str, remote: Any, request_id: str) -> RequestTrace:
    now = time.time_ns()
    if remote is None:
        context = _api.SpanContext(_trace_id(), _span_id(), False, _SAMPLED)
    else:
        context = _api.SpanContext(remote.trace_id, _span_id(), False, remote.trace_flags, remote.trace_state)
    trace = RequestTrace(name, context, remote, now, {"shopinfer.request_id": request_id})
    CURRENT.set(trace)
    TRACE_ID.set(format(context.trace_id, "032x"))
    return trace


def _record(
    name: str,
    parent: Any,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, Any] | None = None,
    *,
    context: Any = None,
    kind: Any = None,
    links: Sequence[Any] = (),
    status: Any = None,
    events: Sequence[Any] = (),
) -> None:
    """Hand a finished span to the provider's span processors (a new child of ``parent`` unless ``context``)."""
    if context is None:
        context = _api.SpanContext(parent.trace_id, _span_id(), False, parent.trace_flags, parent.trace_state)
    _processor.on_end(
        _span(
            name,
            context,
            parent,
            _resource,
            attributes,
            events,
            links,
            kind or _INTERNAL,
            None,
            status or _UNSET,
            start_ns,
            end_ns,
            _scope,
        )
    )


def http_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str] | None:
    """``traceparent``/``tracestate`` from raw ASGI headers (None when the request has no ``traceparent``)."""
    out = {}
    for key, value in raw:
        if key == b"traceparent" or key == b"tracestate":
            out[key.decode()] = value.decode("latin-1")
    return out if "traceparent" in out else None


def end_request(trace: RequestTrace, status: int | str, error: str | None = None) -> None:
    """Record the request's SERVER span (its children were recorded as they ended)."""
    attributes = trace.attributes
    attributes["http.response.status_code" if isinstance(status, int) else "rpc.grpc.status_code"] = status
    outcome = None if error is None else _api.Status(_api.StatusCode.ERROR, error)
    kind = _SERVER
    _record(trace.name, trace.remote, trace.start_ns, time.time_ns(), attributes, context=trace.context, kind=kind,
            status=outcome)  # fmt: skip


def annotate(model: str, version: str, code: str) -> None:
    """Model, version and outcome code on the current request span (from the request's metrics observation)."""
    trace = CURRENT.get()
    if trace is not None:
        trace.attributes.update({"shopinfer.model": model, "shopinfer.version": version, "shopinfer.code": code})


def mark(name: str) -> None:
    """A child span of the current request from the previous mark to now; no-op for an untraced request."""
    trace = CURRENT.get()
    if trace is None:
        return
    now = time.time_ns()
    _record(name, trace.context, trace.last_ns, now)
    trace.last_ns = now


def skip() -> None:
    """Move the current request's mark to now (the time since is covered by the batcher's spans)."""
    trace = CURRENT.get()
    if trace is not None:
        trace.last_ns = time.time_ns()


def item_context() -> Any:
    """What the batcher keeps per queued item: the request span's context (None when untraced)."""
    trace = CURRENT.get()
    return None if trace is None else trace.context


class _Batch:
    """A running batch span: recorded by :func:`end_batch`, parent of :func:`batch_child` spans."""

    __slots__ = ("context", "start_ns", "links", "attributes")

    def __init__(self, context: Any, start_ns: int, links: list[Any], attributes: dict[str, Any]) -> None:
        self.context, self.start_ns, self.links, self.attributes = context, start_ns, links, attributes


def begin_batch(name: str, contexts: list[Any], enqueued: list[float], started: float, rows: int) -> Any:
    """Each traced request's ``queue`` span and the batch span (linked to every traced request it serves, in the
    first one's trace); returns a token for :func:`end_batch`. ``enqueued``/``started`` are ``time.monotonic()``
    stamps."""
    start_ns = int(started * 1e9) + _OFFSET_NS
    for ctx, queued_at in zip(contexts, enqueued, strict=True):
        _record("queue", ctx, int(queued_at * 1e9) + _OFFSET_NS, start_ns)
    first = contexts[0]
    context = _api.SpanContext(_trace_id(), _span_id(), False, first.trace_flags, first.trace_state)
    attributes = {"shopinfer.batcher": name, "shopinfer.batch_rows": rows, "shopinfer.batch_requests": len(contexts)}
    batch = _Batch(context, start_ns, [_api.Link(ctx) for ctx in contexts], attributes)
    return batch, _BATCH.set(batch)


def end_batch(token: Any, error: BaseException | None = None) -> None:
    batch, reset = token
    _BATCH.reset(reset)
    status: Any = None
    events: tuple[Any, ...] = ()
    if error is not None:
        status, events = _api.Status(_api.StatusCode.ERROR, repr(error)), (_exception_event(error),)
    _record("batch", None, batch.start_ns, time.time_ns(), batch.attributes, context=batch.context,
            links=batch.links, status=status, events=events)  # fmt: skip


def _exception_event(error: BaseException) -> Any:
    """The ``exception`` event the SDK's ``Span.record_exception`` would add."""
    from opentelemetry.sdk.trace import Event

    cls = type(error)
    kind = cls.__qualname__ if cls.__module__ in ("builtins", "") else f"{cls.__module__}.{cls.__qualname__}"
    return Event(
        "exception",
        {
            "exception.type": kind,
            "exception.message": str(error),
            "exception.stacktrace": "".join(traceback.format_exception(error)),
            "exception.escaped": "False",
        },
    )


def batch_child(name: str, start_ns: int, **attributes: Any) -> None:
    """A child span of the running batch (e.g. a feature-store read) from ``start_ns`` (``time.time_ns()``)."""
    batch = _BATCH.get()
    if batch is not None:
        _record(name, batch.context, start_ns, time.time_ns(), attributes)
