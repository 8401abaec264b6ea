"""Malformed request bytes become ``INVALID_ARGUMENT`` with the code ``invalid_message``, like any other bad input.

Left to grpc, a request that does not parse (corrupt bytes, or a ``string`` field that is not UTF-8 — proto3
refuses those while parsing) ends ``UNKNOWN`` with "Unexpected DecodeError", which tells a client neither whose
fault it is nor whether to retry. :class:`MalformedRequests` wraps the deserializer of every unary RPC of our own
services so a parse failure reaches the servicer as a :class:`Malformed` value, and the wrapped method answers it
through :func:`app.grpc.status.abort` before the servicer runs. Wrapped handlers are built once per method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from app.errors import InvalidInput
from app.grpc import status


@dataclass(frozen=True)
class Malformed:
    """What the wrapped deserializer returns for bytes that do not parse."""

    reason: str


def _safe(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as e:
            return Malformed(str(e))

    return parse


def _guarded(method: str, behaviour: Callable[[Any, aio.ServicerContext], Awaitable[Any]]) -> Callable[..., Any]:
    async def call(request: Any, context: aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            await status.abort(context, InvalidInput(
                f"{method}: the request message does not parse (corrupt bytes, or a string field that is not "
                f"valid UTF-8): {request.reason}", code="invalid_message"))  # fmt: skip
        return await behaviour(request, context)

    return call


class MalformedRequests(aio.ServerInterceptor):  # type: ignore[misc]
    """Applies to the unary RPCs of the services named in ``services`` (full names, e.g. ``shopinfer.v1.TaskService``)."""

    def __init__(self, services: Sequence[str]) -> None:
        self.prefixes = tuple(f"/{s}/" for s in services)
        self.wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:  # fmt: skip
        method: str = details.method
        cached = self.wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(details)
        if (handler is None or not method.startswith(self.prefixes) or handler.unary_unary is None
                or handler.request_deserializer is None):  # fmt: skip
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            _guarded(method.rsplit("/", 1)[-1], handler.unary_unary),
            request_deserializer=_safe(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
        self.wrapped[method] = wrapped
        return wrapped
