"""The service's errors as gRPC statuses (the table is :data:`app.errors.CATALOGUE`), and the abort that carries them.

Every failure answers with a status code, the human message as status details, and trailing metadata
``shopinfer-error-code`` (the same machine-readable code the REST body carries). Overload is
``RESOURCE_EXHAUSTED`` with ``retry-after-ms`` metadata and a ``google.rpc.RetryInfo`` in the rich status
(``grpc-status-details-bin``), so clients with a retry policy back off as long as HTTP's ``Retry-After`` says.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc import aio

from app.errors import CATALOGUE, Overloaded, ServiceError
from app.logs import REQUEST_ID

LOG = logging.getLogger("app.grpc")
ERROR_CODE_KEY = "shopinfer-error-code"
RETRY_AFTER_KEY = "retry-after-ms"


def grpc_code(exc: ServiceError) -> grpc.StatusCode:
    """The status of ``exc``'s code in :data:`app.errors.CATALOGUE`; a code missing there (a unit test forbids
    that) maps by class: 5xx INTERNAL, anything else INVALID_ARGUMENT."""
    entry = CATALOGUE.get(exc.code)
    if entry is not None:
        return grpc.StatusCode[entry.grpc_status]
    return grpc.StatusCode.INTERNAL if exc.status >= 500 else grpc.StatusCode.INVALID_ARGUMENT


def trailers(exc: ServiceError) -> tuple[tuple[str, str | bytes], ...]:
    """Trailing metadata for ``exc``: its code, and for overload the back-off (plain and as google.rpc.RetryInfo)."""
    meta: list[tuple[str, str | bytes]] = [(ERROR_CODE_KEY, exc.code)]
    rid = REQUEST_ID.get()
    if rid is not None:  # replacing the trailers set at the start of the call must keep the request id
        meta.append(("x-request-id", rid))
    if isinstance(exc, Overloaded):
        delay_ms = max(1, round(exc.retry_after_s * 1000))
        meta.append((RETRY_AFTER_KEY, str(delay_ms)))
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=delay_ms // 1000, nanos=delay_ms % 1000 * 1_000_000)
        )
        detail = any_pb2.Any()
        detail.Pack(retry)
        rich = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=exc.message, details=[detail])
        meta.append(("grpc-status-details-bin", rich.SerializeToString()))
    return tuple(meta)


async def abort(context: aio.ServicerContext, exc: ServiceError) -> NoReturn:
    """End the RPC with ``exc`` mapped through :func:`grpc_code` (raises ``grpc.aio.AbortError``)."""
    context.set_trailing_metadata(trailers(exc))
    await context.abort(grpc_code(exc), exc.message)
    raise AssertionError("unreachable")  # pragma: no cover - context.abort always raises


async def abort_internal(context: aio.ServicerContext, exc: BaseException, method: str, request_id: str) -> NoReturn:
    """An unexpected exception: logged with the request id, answered INTERNAL without leaking details."""
    LOG.error("unhandled error in %s; request_id=%s", method, request_id, exc_info=exc)
    await abort(context, ServiceError(f"internal error (request id {request_id})"))
