"""The service's logging: credentials masked in every line, floods bounded per cause, text or JSON lines.

Every handler of the process gets the same three pieces (:func:`configure_logging`):

* :class:`CauseRateLimit` lets the first ``burst`` lines of one cause (logger + message template) through per
  ``interval_s`` and counts the rest; the next line of that cause after the interval says how many were
  suppressed. A storage outage that fails every request cannot write one line per request.
* :class:`RedactingFormatter` / :class:`JsonFormatter` mask the password of any ``scheme://user:password@``
  URL in the whole formatted line (message, arguments, traceback), whatever logger wrote it.
* The request id of the request being served (a context variable set by the HTTP and gRPC entry points) is put
  on every line written while serving it.

Typical usage::

    configure_logging(settings)                      # once per process, before serving
    token = REQUEST_ID.set(rid); ...; REQUEST_ID.reset(token)
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import re
import threading
import time
from typing import Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""The id of the request being served in this task (None outside a request)."""
TRACE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
"""The W3C trace id of the request being served, when tracing is on."""

# scheme://[user]:password@host -> scheme://[user]:***@host (the user name stays: it helps and is not a secret)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s:/@'\"]*:)[^\s@/'\"]+@")
# password=... / passwd=... in query strings and key=value dumps
_KEY_PASSWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd)=)[^\s&'\",)]+", re.IGNORECASE)
MASK = "***"
ACCESS_LOGGER = "uvicorn.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# attributes a call site may pass with ``extra=`` that the JSON formatter writes as their own fields
CONTEXT_FIELDS = ("model", "version", "code", "endpoint", "worker")


def redact(text: str) -> str:
    """``text`` with the password of every URL (and ``password=`` pair) replaced by ``***``."""
    if "://" not in text and "=" not in text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
    return _KEY_PASSWORD.sub(lambda m: m.group("head") + MASK, text)


def redact_url(url: str | None) -> str:
    """A URL safe to log (``redis://:***@host:6379/0``); None becomes ``"-"``."""
    return "-" if url is None else redact(url)


class CauseRateLimit(logging.Filter):
    """At most ``burst`` lines per cause (logger name + unformatted message) per ``interval_s``.

    While the flood lasts, one line per interval gets through, carrying ``(suppressed K similar lines in the
    last N s)``: the log says how big the flood was without repeating it. Thread-safe: batches log from worker threads.
    """

    def __init__(self, interval_s: float = 10.0, burst: int = 10, max_causes: int = 10_000) -> None:
        super().__init__()
        self.interval_s, self.burst, self.max_causes = interval_s, burst, max_causes
        self._lock = threading.Lock()
        self._causes: dict[tuple[str, str], list[float]] = {}  # cause -> [window start, lines in it, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.interval_s <= 0 or record.name == ACCESS_LOGGER:  # access lines: one template, sampled instead
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            state = self._causes.get(key)
            if state is None:
                if len(self._causes) >= self.max_causes:  # unbounded templates (f-strings): start over
                    self._causes.clear()
                self._causes[key] = [now, 1, 0]
                return True
            if now - state[0] >= self.interval_s:
                suppressed, window = int(state[2]), now - state[0]
                # a flood still going on gets this one summary line per interval, not a new burst
                state[0], state[1], state[2] = now, self.burst if suppressed else 1, 0
                if suppressed:
                    _append(record, f" (suppressed {suppressed} similar lines in the last {window:.0f}s)")
                return True
            if state[1] < self.burst:
                state[1] += 1
                return True
            state[2] += 1
            return False


def _append(record: logging.LogRecord, suffix: str) -> None:
    record.msg = record.getMessage() + suffix
    record.args = None


class AccessLogSample(logging.Filter):
    """Keeps a random ``ratio`` of the access-log lines (1.0 = all)."""

    def __init__(self, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio

    def filter(self, record: logging.LogRecord) -> bool:
        return self.ratio >= 1.0 or random.random() < self.ratio


class RequestContext(logging.Filter):
    """Puts the current request id and trace id on the record (``%(request_id)s`` works in any format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        if not hasattr(record, "trace_id"):
            record.trace_id = TRACE_ID.get()
        return True


class RedactingFormatter(logging.Formatter):
    """The plain text format, with credentials masked in the whole line (tracebacks included)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        if rid is not None and "request_id=" not in line:
            line = f"{line} [request_id={rid}]"
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, request id, trace id and context fields."""

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.static,
        }
        for key in ("request_id", "trace_id", *CONTEXT_FIELDS):
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return redact(json.dumps(out, default=str, ensure_ascii=False))


def configure_logging(
    level: str,
    fmt: str = "text",
    *,
    rate_interval_s: float = 10.0,
    rate_burst: int = 10,
    access_sample: float = 1.0,
    worker: int | None = None,
) -> logging.Handler:
    """Replace the root logger's handlers with one stderr handler doing all of the above; returns it.

    uvicorn must be run with ``log_config=None`` so its loggers propagate here instead of to its own handlers.
    """
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter({} if worker is None else {"worker": worker}))
    else:
        tag = "" if worker is None else f"[w{worker}] "
        handler.setFormatter(RedactingFormatter(TEXT_FORMAT.replace("%(name)s", tag + "%(name)s")))
    handler.addFilter(RequestContext())
    handler.addFilter(CauseRateLimit(rate_interval_s, rate_burst))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        for old in list(uv.handlers):
            uv.removeHandler(old)
        uv.propagate = True
    access = logging.getLogger(ACCESS_LOGGER)
    for stale in [f for f in access.filters if isinstance(f, AccessLogSample)]:
        access.removeFilter(stale)
    if access_sample < 1.0:
        access.addFilter(AccessLogSample(access_sample))
    return handler


class RateLimitedLog:
    """``note(message)`` logs at most once per ``interval_s`` (per logger), counting the notes in between.

    For events a client can trigger at will (bad inputs): one line per interval for the whole class of event,
    stricter than the per-cause limit every handler applies."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0, level: int = logging.WARNING) -> None:
        self.logger, self.interval_s, self.level = logger, interval_s, level
        self._next = 0.0
        self._suppressed = 0

    def note(self, message: str) -> bool:
        """Log ``message`` now if the interval has passed (returns True), else count it."""
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return False
        extra = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        self.logger.log(self.level, "%s%s", message, extra)
        self._suppressed = 0
        self._next = now + self.interval_s
        return True
