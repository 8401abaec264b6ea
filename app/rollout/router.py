"""Which version answers a request: the policy's stable one, or its canary for a ``weight`` share of requests.

With a stickiness key the choice is a stable hash of the key's value (BLAKE2b, the same in every process, unlike
Python's salted ``hash()``), so one customer sees one version over HTTP and gRPC, in every worker and pod; without
one it is a fresh random draw per request.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import Any

from app.rollout.policy import Policy

_SCALE = float(1 << 64)


def bucket(value: str, salt: int) -> float:
    """``value`` -> [0, 1), uniform and identical everywhere; salted by the canary version so each rollout
    draws its own customers."""
    digest = hashlib.blake2b(f"{salt}:{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def sticky_value(sticky: str, req: Any, headers: Any) -> str | None:
    """The key's value: a request field (``user_id``; a KServe request's parameter; ad-CTR's ``context``), or
    ``header:<name>`` from the HTTP headers / gRPC metadata. None when the request lacks it."""
    if sticky.startswith("header:"):
        return header_value(headers, sticky[7:].lower())
    value = getattr(req, sticky, None)
    if value is None:
        for holder in ("context", "parameters"):
            fields = getattr(req, holder, None)
            if isinstance(fields, Mapping) and fields.get(sticky) is not None:
                value = fields[sticky]
                break
    return None if value is None else str(value)


def header_value(headers: Any, name: str) -> str | None:
    """A header from ASGI's raw ``[(bytes, bytes)]`` list or from gRPC metadata (a ``str -> str`` mapping)."""
    if isinstance(headers, Mapping):
        found = headers.get(name)
        return None if found is None else str(found)
    if headers:
        key = name.encode("latin-1")
        for k, v in headers:
            if k == key:
                return str(v.decode("latin-1"))
    return None


def choose(policy: Policy, req: Any, headers: Any, rng: random.Random) -> int:
    """The version to serve this request."""
    canary = policy.canary
    if canary is None or canary.weight <= 0:
        return policy.stable
    value = sticky_value(canary.sticky, req, headers) if canary.sticky else None
    draw = bucket(value, canary.version) if value is not None else rng.random()
    return canary.version if draw < canary.weight else policy.stable
