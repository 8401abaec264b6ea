"""OpenTelemetry tracing of inference requests: off by default, and then one flag check per step.

A traced request gets a SERVER span (W3C ``traceparent`` from HTTP headers or gRPC metadata continues the
caller's trace) with children laid end to end: ``parse`` (body read and decode), ``validate`` (task checks, up to
queueing), ``queue`` (waiting for a batch), ``postprocess`` (after the batch, until the answer). The ``batch``
span runs once per batch, **linked** to every request span it served, with ``feature_store.read`` as its child
where the task reads one. Spans are recorded with explicit start/end times from marks taken on the way, so a
request holds no context manager open and the batcher only keeps a span context per traced item.

Root requests are sampled here (``random() < ratio``) before any SDK call: an unsampled request costs one
``random()`` and a context-variable read per step, and creates no span, context or attribute. A sampled
``traceparent`` is always followed, an unsampled one never. Since that decision is final, the provider that
:func:`configure` builds samples every span it is asked for (no second, per-span sampler pass), and the SDK
names the hot functions use are bound once by :func:`install` (an ``import`` inside a function costs about a
microsecond per call).

Typical usage::

    if tracing.ENABLED:
        tracing.mark("parse")        # a child span from the previous mark (or the request start) to now
"""

from __future__ import annotations

import contextvars
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from app.logs import TRACE_ID

if TYPE_CHECKING:
    from app.settings import Settings

LOG = logging.getLogger(__name__)

ENABLED = False
"""True once a tracer is installed; every call site checks it first (the whole cost when tracing is off)."""

_tracer: Any = None
_provider: Any = None
_ratio = 1.0
_api: Any = None  # the ``opentelemetry.trace`` module once installed (optional dependency: imported lazily)
_propagator: Any = None
_OFFSET_NS = time.time_ns() - time.monotonic_ns()  # the batcher's monotonic stamps -> wall-clock ns


class RequestTrace:
    """One sampled request: its span, the context its children hang from (built once), and the time of the last
    mark (where the next child span starts)."""

    __slots__ = ("span", "parent", "last_ns")

    def __init__(self, span: Any, start_ns: int) -> None:
        self.span, self.last_ns = span, start_ns
        self.parent = _api.set_span_in_context(span)


CURRENT: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar("trace_request", default=None)
_BATCH: contextvars.ContextVar[Any] = contextvars.ContextVar("trace_batch", default=None)


def configure(settings: Settings) -> None:
    """Install the OTLP/HTTP exporter when ``APP_TRACING_ENABLED`` (once per process; needs the ``otel`` extra)."""
    if not settings.tracing_enabled or ENABLED:
        return
    install(otlp_provider(settings.tracing_service_name, settings.tracing_endpoint), settings.tracing_sample_ratio)
    LOG.info("tracing on: %.3g of root requests, OTLP/HTTP to %s", _ratio, settings.tracing_endpoint or "the default")


def otlp_provider(service_name: str, endpoint: str | None) -> Any:
    """The provider :func:`configure` installs: every span it is asked for sampled (:func:`start_request` has
    decided already), a batch span processor, OTLP/HTTP to ``endpoint`` (None: the exporter's default)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}), sampler=ALWAYS_ON)
    exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def install(provider: Any, ratio: float = 1.0) -> None:
    """Trace with ``provider`` (any SDK ``TracerProvider``: tests pass one with an in-memory exporter)."""
    global ENABLED, _tracer, _provider, _ratio, _api, _propagator
    import opentelemetry.trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _api, _propagator = opentelemetry.trace, TraceContextTextMapPropagator()
    _provider, _ratio = provider, ratio
    _tracer = provider.get_tracer("shopinfer")
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
    global ENABLED, _tracer, _provider
    provider, ENABLED, _tracer, _provider = _provider, False, None, None
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
    """The caller's context when its ``traceparent`` says sampled, else None (the caller decided)."""
    context = _propagator.extract(headers)
    return context if _api.get_current_span(context).get_span_context().trace_flags.sampled else None


def _begin(name: str, context: Any, request_id: str) -> RequestTrace:
    now = time.time_ns()
    span = _tracer.start_span(
        name,
        context=context,
        kind=_api.SpanKind.SERVER,
        start_time=now,
        attributes={"shopinfer.request_id": request_id},
    )
    trace = RequestTrace(span, now)
    CURRENT.set(trace)
    TRACE_ID.set(format(span.get_span_context().trace_id, "032x"))
    return trace


def http_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str] | None:
    """``traceparent``/``tracestate`` from raw ASGI headers (None when the request has no ``traceparent``)."""
    out = {}
    for key, value in raw:
        if key == b"traceparent" or key == b"tracestate":
            out[key.decode()] = value.decode("latin-1")
    return out if "traceparent" in out else None


def end_request(trace: RequestTrace, status: int | str, error: str | None = None) -> None:
    span = trace.span
    span.set_attribute("http.response.status_code" if isinstance(status, int) else "rpc.grpc.status_code", status)
    if error is not None:
        span.set_status(_api.Status(_api.StatusCode.ERROR, error))
    span.end()


def annotate(model: str, version: str, code: str) -> None:
    """Model, version and outcome code on the current request span (from the request's metrics observation)."""
    trace = CURRENT.get()
    if trace is not None:
        trace.span.set_attributes({"shopinfer.model": model, "shopinfer.version": version, "shopinfer.code": code})


def mark(name: str) -> None:
    """A child span of the current request from the previous mark to now; no-op for an untraced request."""
    trace = CURRENT.get()
    if trace is None:
        return
    now = time.time_ns()
    child = _tracer.start_span(name, context=trace.parent, start_time=trace.last_ns)
    child.end(end_time=now)
    trace.last_ns = now


def skip() -> None:
    """Move the current request's mark to now (the time since is covered by the batcher's spans)."""
    trace = CURRENT.get()
    if trace is not None:
        trace.last_ns = time.time_ns()


def item_context() -> Any:
    """What the batcher keeps per queued item: the request span's context (None when untraced)."""
    trace = CURRENT.get()
    return None if trace is None else trace.span.get_span_context()


def begin_batch(name: str, contexts: list[Any], enqueued: list[float], started: float, rows: int) -> Any:
    """The batch span (linked to every traced request it serves) and each request's ``queue`` span; returns a
    token for :func:`end_batch`. ``enqueued``/``started`` are ``time.monotonic()`` stamps."""
    api = _api
    start_ns = int(started * 1e9) + _OFFSET_NS
    for ctx, queued_at in zip(contexts, enqueued, strict=True):
        parent = api.set_span_in_context(api.NonRecordingSpan(ctx))
        queue = _tracer.start_span("queue", context=parent, start_time=int(queued_at * 1e9) + _OFFSET_NS)
        queue.end(end_time=start_ns)
    batch = _tracer.start_span(
        "batch",
        links=[api.Link(ctx) for ctx in contexts],
        start_time=start_ns,
        attributes={"shopinfer.batcher": name, "shopinfer.batch_rows": rows, "shopinfer.batch_requests": len(contexts)},
    )
    return batch, _BATCH.set(batch)


def end_batch(token: Any, error: BaseException | None = None) -> None:
    batch, reset = token
    _BATCH.reset(reset)
    if error is not None:
        batch.record_exception(error)
        batch.set_status(_api.Status(_api.StatusCode.ERROR, repr(error)))
    batch.end()


def batch_child(name: str, start_ns: int, **attributes: Any) -> None:
    """A child span of the running batch (e.g. a feature-store read) from ``start_ns`` (``time.time_ns()``)."""
    batch = _BATCH.get()
    if batch is None:
        return
    span = _tracer.start_span(name, context=_api.set_span_in_context(batch), start_time=start_ns, attributes=attributes)
    span.end()
