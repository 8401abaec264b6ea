"""Per-call scheduling and auth from gRPC metadata, with the same rules as the HTTP headers.

* deadline: the client's gRPC deadline (``context.time_remaining()``), else metadata ``timeout-ms``, else
  ``APP_DEFAULT_TIMEOUT_MS``; the earliest wins. Work past it fails with DEADLINE_EXCEEDED and never runs.
* ``priority: high|low`` metadata; ``x-request-id`` metadata, else a generated id: on the call's log lines and
  echoed in its trailing metadata.
* ``authorization: Bearer <token>`` for the repository control RPCs (``APP_ADMIN_TOKEN``; unset = disabled).
"""

from __future__ import annotations

import hmac
import itertools
import os
import re
import time
from collections.abc import Mapping

from grpc import aio
from pydantic import SecretStr

from app.batching import Priority
from app.errors import Forbidden, InvalidInput, Unauthorized
from app.logs import REQUEST_ID as REQUEST_ID_VAR
from app.request_options import RequestOptions

REQUEST_ID_KEY = "x-request-id"
MODEL_VERSION_KEY = "x-model-version"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ID_PREFIX = "g" + os.urandom(7).hex()
_ID_COUNTER = itertools.count(1)


def metadata(context: aio.ServicerContext) -> dict[str, str]:
    """Invocation metadata as a dict of text values (binary ``-bin`` keys are skipped)."""
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            out[key] = value
    return out


def request_id(meta: Mapping[str, str]) -> str:
    given = meta.get("x-request-id")
    if given is not None and _SAFE_ID.match(given):
        return given
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def begin_call(context: aio.ServicerContext, meta: Mapping[str, str]) -> str:
    """The call's request id: put on its log lines (:data:`app.logs.REQUEST_ID`) and echoed in the trailing
    metadata, where an error's trailers keep it too (:func:`app.grpc.status.trailers`)."""
    rid = request_id(meta)
    REQUEST_ID_VAR.set(rid)
    context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
    return rid


def name_version(context: aio.ServicerContext, rid: str, version: str) -> None:
    """Trailing metadata of an answer: its request id and ``x-model-version``, the version that answered."""
    context.set_trailing_metadata(((REQUEST_ID_KEY, rid), (MODEL_VERSION_KEY, version)))


def request_options(
    context: aio.ServicerContext, meta: Mapping[str, str], default_timeout_ms: int | None, rid: str
) -> RequestOptions:
    now = time.monotonic()
    deadline = None if default_timeout_ms is None else now + default_timeout_ms / 1000
    raw = meta.get("timeout-ms")
    if raw is not None:
        if not raw.isdigit() or int(raw) <= 0:
            raise InvalidInput(f"timeout-ms metadata {raw!r} must be a positive integer", code="invalid_header")
        deadline = now + int(raw) / 1000
    remaining = context.time_remaining()
    if remaining is not None:
        client = now + max(0.0, remaining)
        deadline = client if deadline is None else min(deadline, client)
    priority = Priority.LOW
    level = meta.get("priority")
    if level is not None:
        try:
            priority = Priority[level.strip().upper()]
        except KeyError:
            raise InvalidInput(f"priority metadata {level!r} must be 'high' or 'low'", code="invalid_header") from None
    return RequestOptions(deadline, priority, rid, meta)


def require_admin(token: SecretStr | None, meta: Mapping[str, str]) -> None:
    """The HTTP admin rule over metadata: disabled (PERMISSION_DENIED) without a token, else a matching bearer."""
    if token is None:
        raise Forbidden("the repository control API is disabled; set APP_ADMIN_TOKEN to enable it")
    scheme, _, given = meta.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("this RPC needs 'authorization: Bearer <token>' metadata")
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise Forbidden("the bearer token is not valid")


def parse_version(raw: str) -> int | None:
    """KServe's version string: empty = the server's choice, else a positive integer."""
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInput(f"model version {raw!r} must be a positive integer", code="invalid_version")
    return int(raw)
