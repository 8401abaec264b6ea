"""The rollout policy of one model (``<repo>/<model>/policy.json``): which version is stable, which one is a canary
and with what weight, which one is shadowed, and the limits that roll a canary back.

One module for the command line, the admin endpoint and the service, so a policy the CLI writes is exactly one
the service accepts. ``model_repo/policy.schema.json`` is generated from :class:`Policy` and compared by a test.
Writes are atomic (a temporary file renamed over the old one) and serialised by a lock file, so two writers
(an operator and a worker rolling a canary back) never interleave; readers never see a half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.repository import list_versions, model_dir

POLICY_FILE = "policy.json"
LOCK_FILE = ".policy.lock"
SCHEMA_VERSION = 1
MAX_EVENTS = 50
"""Events kept in the file (the newest): enough history for an operator, bounded for a hot-reloaded file."""
STICKY_PATTERN = r"^(header:)?[A-Za-z0-9_.-]{1,64}$"


class PolicyError(Exception):
    """A policy that cannot be used; ``reason`` is machine-readable (``bad_policy``, ``unknown_version``, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Canary(_Strict):
    version: int = Field(ge=1)
    weight: float = Field(ge=0, le=1)
    """Share of requests (0-1) the canary answers."""
    sticky: str | None = Field(default=None, pattern=STICKY_PATTERN)
    """Request field (``user_id``; for ad-CTR also a ``context`` field) or ``header:<name>`` whose value picks
    the version: the same value always lands on the same version, over HTTP and gRPC."""
    compare_rate: float = Field(default=0.2, ge=0, le=1)
    """Share of canary answers also scored by the stable version (after the answer) to measure agreement."""


class Shadow(_Strict):
    version: int = Field(ge=1)
    rate: float = Field(ge=0, le=1)
    """Share of live requests copied to the shadow version (scored after the live answer, never returned)."""


class Limits(_Strict):
    """A canary that breaks one of these, once ``min_requests`` of its requests were answered, is set to weight 0."""

    min_agreement: float | None = Field(default=None, ge=0, le=1)
    """Lowest mean agreement of the canary's answers with the stable version's (per-task comparison)."""
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    """Highest share of the canary's requests answered with a 5xx error."""
    max_p99_ratio: float | None = Field(default=None, gt=0)
    """Highest ratio of the canary's p99 latency to the stable version's."""
    min_requests: int = Field(default=200, ge=1)
    """Canary requests (and, for ``min_agreement``, comparisons: a tenth of it, at least 10) before judging."""


class Event(_Strict):
    time: datetime
    kind: Literal["set", "promote", "rollback", "clear"]
    version: int | None = None
    reason: str = Field(default="", max_length=2000)


class Policy(_Strict):
    schema_version: int = SCHEMA_VERSION
    stable: int = Field(ge=1)
    """The version that answers every request the canary does not."""
    canary: Canary | None = None
    shadow: Shadow | None = None
    limits: Limits = Limits()
    events: list[Event] = Field(default=[], max_length=MAX_EVENTS)

    @model_validator(mode="after")
    def _distinct(self) -> Policy:
        if self.schema_version > SCHEMA_VERSION:
            raise ValueError(f"schema_version {self.schema_version}: this service reads up to {SCHEMA_VERSION}")
        if self.canary is not None and self.canary.version == self.stable:
            raise ValueError("the canary must be another version than the stable one")
        if self.shadow is not None and self.shadow.version == self.stable:
            raise ValueError("the shadow must be another version than the stable one")
        return self

    def named(self) -> set[int]:
        """Versions the policy names: they stay loaded while named."""
        out = {self.stable}
        if self.canary is not None:
            out.add(self.canary.version)
        if self.shadow is not None:
            out.add(self.shadow.version)
        return out

    def shadow_only(self, version: int) -> bool:
        """Whether ``version`` is only this policy's shadow: it answers no live request."""
        canary = self.canary.version if self.canary is not None else None
        return self.shadow is not None and version == self.shadow.version and version not in (self.stable, canary)

    def with_event(
        self, kind: Literal["set", "promote", "rollback", "clear"], version: int | None, reason: str
    ) -> Policy:
        event = Event(time=datetime.now(UTC), kind=kind, version=version, reason=reason[:2000])
        return self.model_copy(update={"events": [*self.events, event][-MAX_EVENTS:]})


def policy_path(root: Path, model: str) -> Path:
    return model_dir(root, model) / POLICY_FILE


def parse_policy(raw: bytes | str, where: str = POLICY_FILE) -> Policy:
    try:
        return Policy.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"]) or "policy"
        raise PolicyError("bad_policy", f"{where}: {loc}: {first['msg']}") from None


def read_policy(root: Path, model: str) -> Policy | None:
    """The model's policy, None when it has none; raises :class:`PolicyError` when the file is unusable."""
    path = policy_path(root, model)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PolicyError("unreadable", f"{model}/{POLICY_FILE}: {e.strerror or e}") from None
    return parse_policy(raw, f"{model}/{POLICY_FILE}")


def check_versions(policy: Policy, published: Collection[int], model: str = "") -> None:
    """Every version the policy names must be published: a typo must not route traffic to nothing."""
    missing = sorted(policy.named() - set(published))
    if missing:
        raise PolicyError(
            "unknown_version",
            f"{model or 'the model'} has no published version {missing} (published: {sorted(published)})",
        )


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # the rename itself durable (best effort: not every file system allows it)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def dump(policy: Policy) -> bytes:
    return json.dumps(policy.model_dump(mode="json", exclude_none=True), indent=2).encode() + b"\n"


def update_policy(root: Path, model: str, change: Callable[[Policy | None], Policy | None]) -> Policy | None:
    """Read, change and write the policy under the model's lock; ``change`` returning None removes the file.

    The result is validated (schema and published versions) before anything is written, so a refused change
    leaves the file as it was."""
    folder = model_dir(root, model)
    if not folder.is_dir():
        raise PolicyError("unknown_model", f"model {model!r} is not in the repository {root}")
    with _locked(folder):
        path = folder / POLICY_FILE
        current = read_policy(root, model) if path.exists() else None
        new = change(current)
        if new is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        new = parse_policy(dump(new))  # the exact bytes a reader will parse
        check_versions(new, list_versions(root, model), model)
        _write_atomic(path, dump(new))
        return new


def set_change(
    stable: int | None = None,
    canary: int | None = None,
    weight: float | None = None,
    sticky: str | None = None,
    shadow: int | None = None,
    shadow_rate: float | None = None,
    limits: dict[str, float | int] | None = None,
) -> Callable[[Policy | None], Policy]:
    """``policy set``: the given parts replace the current policy's (a new policy needs ``stable``)."""

    def change(current: Policy | None) -> Policy:
        doc = current.model_dump(mode="json") if current is not None else {}
        if stable is not None:
            doc["stable"] = stable
        if "stable" not in doc:
            raise PolicyError("bad_policy", "a new policy needs a stable version (--stable N)")
        if canary is not None:
            if weight is None:
                raise PolicyError("bad_policy", "a canary needs a weight (--weight W, 0-1)")
            doc["canary"] = {"version": canary, "weight": weight, **({"sticky": sticky} if sticky else {})}
        elif weight is not None:
            if doc.get("canary") is None:
                raise PolicyError("bad_policy", "--weight without a canary: name one with --canary N")
            doc["canary"] = {**doc["canary"], "weight": weight, **({"sticky": sticky} if sticky else {})}
        if shadow is not None:
            doc["shadow"] = {"version": shadow, "rate": 0.1 if shadow_rate is None else shadow_rate}
        elif shadow_rate is not None:
            if doc.get("shadow") is None:
                raise PolicyError("bad_policy", "--shadow-rate without a shadow: name one with --shadow N")
            doc["shadow"] = {**doc["shadow"], "rate": shadow_rate}
        if limits:
            doc["limits"] = {**doc.get("limits", {}), **limits}
        new = parse_policy(json.dumps(doc))
        return new.with_event("set", new.canary.version if new.canary else new.stable, "set by an operator")

    return change


def promote_change(current: Policy | None) -> Policy:
    """``policy promote``: the canary becomes the stable version (the old stable is no longer named)."""
    if current is None or current.canary is None:
        raise PolicyError("no_canary", "there is no canary to promote")
    version = current.canary.version
    shadow = current.shadow if current.shadow is None or current.shadow.version != version else None
    promoted = current.model_copy(update={"stable": version, "canary": None, "shadow": shadow})
    return promoted.with_event("promote", version, f"canary {version} promoted over stable {current.stable}")


def rollback_change(version: int, reason: str) -> Callable[[Policy | None], Policy | None]:
    """The service's automatic rollback: the canary ``version`` to weight 0, with why; a no-op when the policy
    changed meanwhile (another worker or pod rolled it back, an operator moved on)."""

    def change(current: Policy | None) -> Policy | None:
        if current is None or current.canary is None or current.canary.version != version or not current.canary.weight:
            return current
        stopped = current.model_copy(update={"canary": current.canary.model_copy(update={"weight": 0.0})})
        return stopped.with_event("rollback", version, reason)

    return change


def schema() -> dict[str, object]:
    return Policy.model_json_schema()


if __name__ == "__main__":  # regenerate model_repo/policy.schema.json
    print(json.dumps(schema(), indent=2))
