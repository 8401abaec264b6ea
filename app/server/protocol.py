"""uvicorn's httptools protocol with one socket write per response instead of two.

uvicorn writes the status line and headers on ``http.response.start`` and the body on ``http.response.body``:
two ``send`` syscalls for every small JSON answer, which was the largest single cost of a 1-row inference.
:class:`CoalescingHttpProtocol` holds a header block until the body (or the end of the response) arrives and
writes both at once. Interim ``100 Continue`` answers pass straight through.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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


class CoalescingHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _CoalescingTransport(transport)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]  # a body-less response (HEAD, 204, 304)
        super().on_response_complete()
