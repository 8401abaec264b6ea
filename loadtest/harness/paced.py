"""Open-loop load at a fixed offered rate (wrk2-style; wrk itself only runs closed loops).

Request ``i`` is due at ``t0 + i / rate`` whether or not earlier ones were answered, and its latency is counted
from when it was due, not from when a connection was free to send it: a server that stalls is charged for every
request that would have arrived meanwhile (no coordinated omission). "Same offered load" is then literal: two
servers get the same request times, and one that keeps up shows it in its latency, not in fewer requests.

Plain HTTP/1.1 keep-alive over asyncio streams (uvloop when installed), one pre-encoded POST, up to
``max_connections`` connections opened as needed. ``send_lag_p99_ms`` says how late the client itself sent
(a client that cannot keep the pace makes the figures meaningless, so it is reported, not hidden).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

T = TypeVar("T")
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class PacedResult:
    """One paced run (requests due in the warm-up are sent but not counted)."""

    offered_rps: float
    rps: float
    """2xx answers per second to the requests due in the measured window (goodput)."""
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    errors: int
    """Connection failures and requests not answered within the timeout."""
    send_lag_p99_ms: float
    sent_p99_ms: float = 0.0
    """p99 from when the request was written to the answer: the server's share (plus the client's read lag), not
    the client's own lateness in sending it (a load generator on the server's cores is slowed by the server)."""


def request_bytes(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[str, int, bytes]:
    """(host, port, the whole HTTP/1.1 POST) for ``url`` with a JSON ``body``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n")  # fmt: skip
    return host, port, head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length framed; the service never chunks JSON answers); returns its status."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


class _Pool:
    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[Conn] = []
        self.opened = 0
        self.freed = asyncio.Condition()

    async def get(self) -> Conn:
        async with self.freed:
            while not self.idle and self.opened >= self.limit:
                await self.freed.wait()
            if self.idle:
                return self.idle.pop()
            self.opened += 1
        try:
            return await asyncio.open_connection(self.host, self.port)
        except BaseException:
            await self.lost()
            raise

    async def put(self, conn: Conn) -> None:
        async with self.freed:
            self.idle.append(conn)
            self.freed.notify()

    async def lost(self) -> None:
        async with self.freed:
            self.opened -= 1
            self.freed.notify()

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in self.idle), return_exceptions=True)


async def _paced(
    url: str, body: bytes, rate: float, duration_s: float, warmup_s: float, max_connections: int, timeout_s: float
) -> PacedResult:
    host, port, raw = request_bytes(url, body)
    pool = _Pool(host, port, max_connections)
    latencies: list[float] = []
    lags: list[float] = []
    served: list[float] = []
    counts = {"non_2xx": 0, "errors": 0}
    clock = time.perf_counter  # not loop.time(): uvloop's is libuv's cached millisecond clock
    t0 = clock() + 0.05
    measured_from = t0 + warmup_s

    async def one(due: float) -> None:
        counted = due >= measured_from
        try:
            conn = await pool.get()
        except OSError:
            counts["errors"] += counted
            return
        sent = clock()
        try:
            conn[1].write(raw)
            status = await asyncio.wait_for(read_response(conn[0]), timeout_s)
        except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError):
            conn[1].close()
            await pool.lost()
            counts["errors"] += counted
            return
        done = clock()
        await pool.put(conn)
        if counted:
            latencies.append(done - due)
            lags.append(sent - due)
            served.append(done - sent)
            counts["non_2xx"] += not 200 <= status < 300

    tasks: list[asyncio.Task[None]] = []
    total = int((warmup_s + duration_s) * rate)
    for i in range(total):
        due = t0 + i / rate
        wait = due - clock()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.ensure_future(one(due)))
    await asyncio.gather(*tasks)
    await pool.close()
    if not latencies:
        raise RuntimeError(f"no answer from {url} in {duration_s} s at {rate:.0f} req/s ({counts})")
    lat_ms = np.asarray(latencies) * 1000
    return PacedResult(
        offered_rps=rate,
        rps=(len(latencies) - counts["non_2xx"]) / duration_s,
        p50_ms=float(np.percentile(lat_ms, 50)),
        p99_ms=float(np.percentile(lat_ms, 99)),
        requests=len(latencies),
        non_2xx=counts["non_2xx"],
        errors=counts["errors"],
        send_lag_p99_ms=float(np.percentile(np.asarray(lags) * 1000, 99)),
        sent_p99_ms=float(np.percentile(np.asarray(served) * 1000, 99)),
    )


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(make())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(make())


def run(
    url: str,
    body: bytes,
    rate: float,
    duration_s: float,
    *,
    warmup_s: float = 1.0,
    max_connections: int = 64,
    timeout_s: float = 10.0,
) -> PacedResult:
    """POST ``body`` to ``url`` at ``rate`` requests/s for ``warmup_s`` + ``duration_s`` seconds (open loop)."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError(f"rate and duration must be positive (got {rate}, {duration_s})")
    return _run(lambda: _paced(url, body, rate, duration_s, warmup_s, max_connections, timeout_s))
