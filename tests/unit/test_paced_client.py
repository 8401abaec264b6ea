"""The open-loop load generator of the paced benchmarks: every due request sent, statuses and bodies framed."""

from __future__ import annotations

import asyncio

import pytest

from loadtest.harness.paced import _paced, request_bytes


async def _server(statuses: list[int], seen: list[bytes]) -> asyncio.Server:
    """Answers each POST with the next status of ``statuses`` (cycling) and a small JSON body."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
            seen.append(await reader.readexactly(length))
            status, count = statuses[count % len(statuses)], count + 1
            body = b'{"ok": true}'
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
            await writer.drain()

    async def safe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its connection: the run is over
        finally:
            writer.close()
            await writer.wait_closed()

    return await asyncio.start_server(safe, "127.0.0.1", 0)


@pytest.mark.parametrize(("status", "ok"), [(200, 60), (503, 0)])
async def test_every_due_request_is_sent_and_counted_by_status(status: int, ok: int) -> None:
    seen: list[bytes] = []
    server = await _server([status], seen)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await _paced(f"http://127.0.0.1:{port}/v1/x", b'{"a": 1}', 300.0, 0.2, 0.1, 8, 10.0)
    finally:
        server.close()
    assert len(seen) == 90 and set(seen) == {b'{"a": 1}'}, f"90 due in 0.3 s at 300/s; the server saw {len(seen)}"
    assert result.requests == 60, f"requests due in the measured 0.2 s at 300/s: {result.requests}"
    assert (result.non_2xx, result.errors) == (60 - ok, 0), result
    assert result.rps == ok / 0.2, result
    assert 0 < result.sent_p99_ms < 10_000, f"p99 from send must be measured on the answered requests: {result}"


def test_request_bytes() -> None:
    host, port, raw = request_bytes("http://127.0.0.1:8123/v1/chat", b"{}", {"x-user-id": "7"})
    assert (host, port) == ("127.0.0.1", 8123)
    assert raw == (b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1:8123\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 2\r\nx-user-id: 7\r\n\r\n{}"), raw  # fmt: skip
