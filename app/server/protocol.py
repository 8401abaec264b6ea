"""uvicorn's httptools protocol with limits on the request head, and one socket write per response instead of two.

:class:`GuardedHttpProtocol` bounds what a client can make the server hold before a request even starts: the
head's size (bytes are counted before they reach the parser, which concatenates a header value chunk by chunk:
a 64 MB header line cost 14 s of event loop and 400 MB), its number of header fields, and the time it may take
to arrive (a slow or silent client, "slowloris", is closed instead of holding a connection forever). A refused
head gets 431 or 408 with a JSON ``code`` and ``connection: close``; the server then reads and discards for at
most ``LINGER_S`` so the client sees the answer instead of a reset.

uvicorn writes the status line and headers on ``http.response.start`` and the body on ``http.response.body``:
two ``send`` syscalls for every small JSON answer, which was the largest single cost of a 1-row inference.
:class:`CoalescingHttpProtocol` holds a header block until the body (or the end of the response) arrives and
writes both at once. Interim ``100 Continue`` answers pass straight through.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.api.errors import error_body
from app.errors import HeadersTooLarge, HeaderTimeout, ServiceError

LINGER_S = 1.0  # after a refusal: how long unread input is drained so the answer is not lost to a TCP reset


@dataclass(frozen=True)
class HeadLimits:
    """What one request head may take: header fields, bytes (request line included) and seconds."""

    max_fields: int = 100
    max_bytes: int = 32 * 1024
    timeout_s: float = 10.0


class GuardedHttpProtocol(HttpToolsProtocol):
    """httptools with the request head bounded in fields, bytes and time (see the module docstring)."""

    limits: ClassVar[HeadLimits] = HeadLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # draining until the linger timer closes the connection
        while data:
            if not self._reading_head:
                super().data_received(data)
                return
            room = max(1, self.limits.max_bytes - self._head_bytes)
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)
            if self._refused or self.transport.is_closing():
                return
            if self._reading_head and self._head_bytes >= self.limits.max_bytes:
                self._refuse(HeadersTooLarge(f"the request head exceeds {self.limits.max_bytes} bytes"))
                return

    # parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a pipelined head; otherwise the clock runs from connect or idle start
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._reading_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        # counted once the head is complete (no per-header hook on the hot path): the byte limit already bounds
        # how many fields a head can carry
        if len(self.headers) > self.limits.max_fields:
            self._refuse(
                HeadersTooLarge(
                    f"the request has {len(self.headers)} header fields; the limit is {self.limits.max_fields}"
                )
            )
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._reading_head = True  # what follows is the next request's head

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._reading_head and not self.transport.is_closing():
            self._arm_head_timer()  # an idle keep-alive connection owes the next head within the timeout

    # head timer and refusal
    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if self._refused or not self._reading_head or busy or self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self.transport.close()  # nothing sent: nobody to answer
            return
        self._refuse(HeaderTimeout(f"the request head did not arrive within {self.limits.timeout_s:g} s"))

    def _refuse(self, exc: ServiceError) -> None:
        """Answer ``exc`` with ``connection: close``, stop parsing, drain briefly, then close."""
        self._refused = True
        self._cancel_head_timer()
        path = self.url.split(b"?", 1)[0].decode("latin-1") if getattr(self, "url", b"") else "/"
        body = error_body(path, exc.code, exc.message)
        head = b"".join(
            [
                STATUS_LINE[exc.status],
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
        )
        self.transport.write(head + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


class _CoalescingTransport:
    """Forwards everything to the real transport; a header block waits for the next write."""

    __slots__ = ("_held", "_t")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._t = transport
        self._held = b""

    def write(self, data: bytes) -> None:
        if self._held:
            held, self._held = self._held, b""
            self._t.write(held + data)
        elif data[-4:] == b"\r\n\r\n" and data[:5] == b"HTTP/" and data[9:12] != b"100":
            self._held = data
        else:
            self._t.write(data)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, b""
            self._t.write(held)

    def close(self) -> None:
        self.flush()
        self._t.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


class CoalescingHttpProtocol(GuardedHttpProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _CoalescingTransport(transport)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]  # a body-less response (HEAD, 204, 304)
        super().on_response_complete()


def guarded_protocol(limits: HeadLimits, *, coalesce: bool) -> type[GuardedHttpProtocol]:
    """The protocol class uvicorn instantiates per connection, with ``limits`` bound (uvicorn takes a class)."""
    base = CoalescingHttpProtocol if coalesce else GuardedHttpProtocol
    return type(base.__name__, (base,), {"limits": limits})
