"""Per-request scheduling options, shared by the HTTP and gRPC layers, the task interface and the service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.batching import Priority


@dataclass(slots=True)
class RequestOptions:
    """Per-request scheduling: absolute deadline on ``time.monotonic()``, priority, id for logs. Treated as
    immutable (a changed copy is a new object); not ``frozen``, whose ``__init__`` costs 3x on every request."""

    deadline: float | None = None
    priority: Priority = Priority.LOW
    request_id: str = ""
    headers: Any = None
    """The request's headers (ASGI raw list) or gRPC metadata (dict), for a rollout's ``header:`` stickiness key."""
    preemptible: bool = False
    """A shadow sample: its batch gives way to live work (:mod:`app.runtime.preempt`); never set from a request."""
