"""Logging: credentials masked in every line, floods bounded per cause, JSON lines with the request context."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app.logs import REQUEST_ID, CauseRateLimit, JsonFormatter, configure_logging, redact, redact_url


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("redis://:s3cr3t-pw@10.0.0.1:6379/0", "s3cr3t-pw"),
        ("listening on rediss://default:hunter2@cache.internal:6380/1 now", "hunter2"),
        ("Redis<ConnectionPool<Connection<host=x,password=topsecret,db=0>>>", "topsecret"),
        ("error: 'postgresql://app:p%40ss@db/x' refused", "p%40ss"),
    ],
)
def test_redact_masks_passwords_and_keeps_the_rest(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and "***" in out, out
    assert out.split("***")[0] == text.split(secret)[0].rstrip("=") + ("=" if "password=" in text else ""), out


def test_redact_leaves_urls_without_credentials_alone() -> None:
    for text in ("redis://127.0.0.1:6379/0", "http://host:8000/v2/models/x", "a=b c"):
        assert redact(text) == text
    assert redact_url(None) == "-"


def _capture(fmt: str, **kw: float) -> tuple[io.StringIO, logging.Logger]:
    handler = configure_logging("info", fmt, **kw)  # type: ignore[arg-type]
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    return stream, logging.getLogger("test.logs")


def test_every_line_is_redacted_including_arguments_and_tracebacks(restore_root: None) -> None:
    stream, log = _capture("text")
    url = "redis://:pw-in-url@127.0.0.1:1/0"
    log.warning("connecting to %s", url)
    try:
        raise ConnectionError(f"cannot reach {url}")
    except ConnectionError:
        log.exception("failed")
    out = stream.getvalue()
    assert "pw-in-url" not in out and out.count("redis://:***@127.0.0.1:1/0") == 2, out


def test_a_flood_of_one_cause_is_bounded_and_counted(restore_root: None) -> None:
    clock = [100.0]
    stream, log = _capture("text", rate_interval_s=10.0, rate_burst=3)
    limiter = next(f for f in logging.getLogger().handlers[0].filters if isinstance(f, CauseRateLimit))
    import app.logs as logs_mod

    real = logs_mod.time.monotonic
    logs_mod.time.monotonic = lambda: clock[0]  # type: ignore[assignment]
    try:
        for i in range(1000):
            log.warning("event not stored: %s", i)
        log.warning("another cause %d", 1)
        clock[0] += 10.5
        log.warning("event not stored: %s", "later")
        for i in range(100):  # the flood goes on: no new burst, only the next summary after the interval
            log.warning("event not stored: %s", i)
        clock[0] += 10.5
        log.warning("event not stored: %s", "calm")
        clock[0] += 10.5
        for i in range(4):  # quiet for an interval: a new burst (of 3) is allowed
            log.warning("event not stored: %s", f"again {i}")
    finally:
        logs_mod.time.monotonic = real  # type: ignore[assignment]
    lines = stream.getvalue().splitlines()
    assert len(lines) == 9, lines
    assert "another cause 1" in lines[3], lines
    assert "event not stored: later (suppressed 997 similar lines in the last 10s)" in lines[4], lines
    assert "event not stored: calm (suppressed 100 similar lines in the last 10s)" in lines[5], lines
    assert [line.rsplit(": ", 1)[1] for line in lines[6:]] == ["again 0", "again 1", "again 2"], lines
    assert limiter.burst == 3


def test_json_lines_carry_the_request_context(restore_root: None) -> None:
    stream, log = _capture("json")
    token = REQUEST_ID.set("req-42")
    try:
        log.warning("bad input on %s", "redis://u:pw@h/0", extra={"model": "ad-ctr", "version": 3, "code": "x"})
    finally:
        REQUEST_ID.reset(token)
    log.info("outside a request")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "req-42" and first["model"] == "ad-ctr" and first["version"] == 3, first
    assert first["message"] == "bad input on redis://u:***@h/0" and first["level"] == "WARNING", first
    assert first["logger"] == "test.logs" and first["timestamp"].endswith("Z") and first["code"] == "x", first
    assert "request_id" not in second and second["message"] == "outside a request", second
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "m"})), str)


def test_access_lines_are_sampled_not_rate_limited(restore_root: None) -> None:
    stream, _ = _capture("text", rate_interval_s=10.0, rate_burst=3, access_sample=0.25)
    access = logging.getLogger("uvicorn.access")
    for i in range(2000):
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "POST", f"/v1/ads/ctr?{i}", "1.1", 200)
    kept = len(stream.getvalue().splitlines())
    assert 350 <= kept <= 650, f"{kept} of 2000 access lines kept at a 0.25 sample"
    stream2, _ = _capture("text", rate_interval_s=10.0, rate_burst=3, access_sample=1.0)
    for _ in range(50):
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "POST", "/v1/ads/ctr", "1.1", 200)
    assert len(stream2.getvalue().splitlines()) == 50, "access lines must not be rate-limited as one cause"
