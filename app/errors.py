"""One error tree for the service; transports render it, nothing here imports a web framework.

::

    ServiceError(message, code, status)          500 internal
    ├── InvalidInput                             400 / 422 (bad tensors, JSON, headers, features)
    ├── PayloadTooLarge                          413
    ├── ModelNotFound                            404 (unknown model or version, invalid name)
    ├── ModelNotReady                            503 (loading, draining, failed)
    ├── Overloaded                               503 + Retry-After
    ├── DeadlineExceeded                         504
    ├── Unauthorized                             401 (missing / wrong bearer token)
    ├── Forbidden                                403 (admin API disabled)
    ├── UnsupportedMediaType                     415 (a JSON endpoint sent another content type)
    ├── HeadersTooLarge                          431 (too many request header fields, or too many bytes)
    ├── HeaderTimeout                            408 (the request head did not arrive in time)
    └── InferenceFailed                          500 (the runtime raised on a valid request)

:data:`CATALOGUE` lists every machine-readable code with its HTTP status, its gRPC status and what it means; the
OpenAPI document, the gRPC mapping (:mod:`app.grpc.status`) and ``docs/reference/errors.md`` are built from it, and a
unit test fails when a code raised anywhere in ``app/`` is missing from it (or it lists a code nobody raises).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass


class ServiceError(Exception):
    """An expected failure with a stable machine-readable ``code`` and the HTTP ``status`` it maps to."""

    code = "internal"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. ``Retry-After``)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, message={self.message!r})"


class InvalidInput(ServiceError):
    """The request is malformed or does not match the model's signature (400; 422 for task schemas)."""

    code = "invalid_input"
    status = 400


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"
    status = 413


class ModelNotFound(ServiceError):
    code = "model_not_found"
    status = 404


class ModelNotReady(ServiceError):
    code = "model_not_ready"
    status = 503


class Overloaded(ServiceError):
    """The queue is full: the client should back off for ``retry_after_s`` seconds."""

    code = "overloaded"
    status = 503

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class DeadlineExceeded(ServiceError):
    code = "deadline_exceeded"
    status = 504


class Unauthorized(ServiceError):
    code = "unauthorized"
    status = 401

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(ServiceError):
    code = "forbidden"
    status = 403


class InferenceFailed(ServiceError):
    """The runtime raised on a request that passed validation (the message stays generic)."""

    code = "inference_failed"
    status = 500


class UnsupportedMediaType(ServiceError):
    """A JSON endpoint got another content type: a cross-origin form or ``text/plain`` post is never a write."""

    code = "unsupported_media_type"
    status = 415


class HeadersTooLarge(ServiceError):
    """The request head has more header fields or bytes than the server reads (refused before any parsing)."""

    code = "headers_too_large"
    status = 431


class HeaderTimeout(ServiceError):
    """The request head did not complete within the header-read timeout (a slow or stalled client)."""

    code = "header_timeout"
    status = 408


def names_hint(given: str | Collection[str], valid: Collection[str], noun: str, *, limit: int = 60) -> str:
    """ "did you mean 'I5'? <noun>: I1, I2, ..." for a message about unknown names: the closest valid name of each
    (case-insensitive, difflib) and the valid ones, so a newcomer fixes the request without reading the source."""
    by_lower = {v.lower(): v for v in valid}
    guesses = []
    for name in [given] if isinstance(given, str) else given:
        close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
        if close and by_lower[close[0]] != name:
            guesses.append(repr(by_lower[close[0]]))
    names = sorted(valid)
    listed = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
    hint = f"did you mean {' or '.join(dict.fromkeys(guesses))}? " if guesses else ""
    return f"{hint}{noun}: {listed or 'none'}"


@dataclass(frozen=True)
class ErrorCode:
    """One machine-readable error code: what a client sees over HTTP and gRPC, and what it means."""

    code: str
    http_status: int | None
    """None: the status varies (the web framework's own status is passed through)."""
    grpc_status: str
    """A ``grpc.StatusCode`` name (strings keep this module free of the grpc package)."""
    meaning: str


def _catalogue(*entries: ErrorCode) -> Mapping[str, ErrorCode]:
    table = {e.code: e for e in entries}
    if len(table) != len(entries):
        raise ValueError("an error code is listed twice")
    return table


_BAD = "INVALID_ARGUMENT"  # fix the request; retrying the same bytes cannot succeed
CATALOGUE: Mapping[str, ErrorCode] = _catalogue(
    ErrorCode("invalid_input", 400, _BAD, "a v2 tensor is malformed: names, shape/data size, ragged or non-numeric "
              "data, unknown outputs"),
    ErrorCode("invalid_json", 400, _BAD, "the body is not JSON, or not a JSON object"),
    ErrorCode("invalid_utf8", 400, _BAD, "a free-text task's body is not UTF-8"),
    ErrorCode("invalid_message", 400, _BAD, "gRPC only: the request bytes do not parse as the RPC's message"),
    ErrorCode("invalid_header", 400, _BAD, "bad `timeout-ms`, `priority`, `Content-Length` or "
              "`Inference-Header-Content-Length` header (or gRPC metadata)"),
    ErrorCode("invalid_parameter", 400, _BAD, "a KServe request parameter (`priority`, `timeout`) is out of range"),
    ErrorCode("invalid_version", 400, _BAD, "the model version in the path is not a positive integer"),
    ErrorCode("datatype_mismatch", 400, _BAD, "a tensor's datatype is not the one the model's signature takes"),
    ErrorCode("shape_mismatch", 400, _BAD, "a tensor's shape does not match the signature, or inputs disagree on "
              "the batch size"),
    ErrorCode("index_out_of_range", 400, _BAD, "an id in an index input is outside the model's table"),
    ErrorCode("unsupported", 400, _BAD, "BYTES tensors and shared-memory tensors are not supported"),
    ErrorCode("unauthorized", 401, "UNAUTHENTICATED", "repository control without a bearer token"),
    ErrorCode("forbidden", 403, "PERMISSION_DENIED", "wrong token, or the control API is disabled (no "
              "`APP_ADMIN_TOKEN`)"),
    ErrorCode("model_not_found", 404, "NOT_FOUND", "unknown model or version, or an invalid model name (the message "
              "lists the models served)"),
    ErrorCode("not_found", 404, "NOT_FOUND", "HTTP only: no such route (e.g. `%2F` in a model name decodes to a path)"),
    ErrorCode("method_not_allowed", 405, "UNIMPLEMENTED", "HTTP only: the route exists, the method does not (`Allow` "
              "lists the ones that do)"),
    ErrorCode("payload_too_large", 413, _BAD, "the body is over `APP_MAX_BODY_BYTES` (Content-Length or actual "
              "bytes)"),
    ErrorCode("too_many_candidates", 413, _BAD, "more candidates than the task allows (`APP_MAX_CANDIDATES`, per task `APP_MAX_CANDIDATES_TASKS`)"),
    ErrorCode("message_too_long", 413, _BAD, "a chat message over the version's character or token limit"),
    ErrorCode("query_too_long", 413, _BAD, "a search query over the version's character limit"),
    ErrorCode("product_text_too_long", 413, _BAD, "a search candidate's text over the version's limit"),
    ErrorCode("header_timeout", 408, "DEADLINE_EXCEEDED", "HTTP only: the request head did not arrive within "
              "`APP_HEADER_TIMEOUT_S`"),
    ErrorCode("unsupported_media_type", 415, _BAD, "a JSON endpoint got another content type (only "
              "`application/json` and `application/*+json` are accepted)"),
    ErrorCode("invalid_request", 422, _BAD, "a task body does not match its schema (missing/extra fields, wrong "
              "types)"),
    ErrorCode("invalid_field", 422, _BAD, "a field has the wrong shape (e.g. a search text field that is not a "
              "string or a list of strings)"),
    ErrorCode("unknown_field", 422, _BAD, "a field the version does not know (the message lists the valid ones)"),
    ErrorCode("unknown_feature", 422, _BAD, "a feature name the version's featurizer does not know (the message lists "
              "the valid names and the close match)"),
    ErrorCode("invalid_feature", 422, _BAD, "a feature value the featurizer would reject (text in a count, booleans, "
              "lists, inf)"),
    ErrorCode("empty_message", 422, _BAD, "a chat message that is empty or whitespace only"),
    ErrorCode("not_text_message", 422, _BAD, "a chat message that is not a string"),
    ErrorCode("empty_query", 422, _BAD, "a search query that is empty or whitespace only"),
    ErrorCode("duplicate_product", 422, _BAD, "a search candidate's product id is sent twice"),
    ErrorCode("unknown_product", 422, _BAD, "a search candidate without text whose product id the catalogue lacks"),
    ErrorCode("empty_product_text", 422, _BAD, "a search candidate whose text fields are all empty"),
    ErrorCode("bad_policy", 422, _BAD, "a rollout policy change that is malformed or names an unpublished version"),
    ErrorCode("missing_history", 422, _BAD, "a recommendation request with neither a user id nor a history"),
    ErrorCode("k_too_large", 422, _BAD, "a recommendation `k` above the version's top-k"),
    ErrorCode("too_many_excludes", 422, _BAD, "more recommendation exclude ids than the version allows"),
    ErrorCode("headers_too_large", 431, _BAD, "HTTP only: more header fields than `APP_MAX_HEADER_FIELDS` or "
              "more head bytes than `APP_MAX_HEADER_BYTES`"),
    ErrorCode("internal", 500, "INTERNAL", "an unexpected error; the message carries the request id, details are "
              "only in the log"),
    ErrorCode("inference_failed", 500, "INTERNAL", "the runtime raised on a request that passed validation"),
    ErrorCode("http_error", None, "UNKNOWN", "HTTP only: another error of the web framework, with its own status"),
    ErrorCode("model_not_ready", 503, "UNAVAILABLE", "the version is loading, draining, failed, unloaded or not "
              "selected by the version policy: another replica may serve it"),
    ErrorCode("wrong_task", 503, "UNAVAILABLE", "the model behind a task route is of another task (see "
              "`APP_TASK_MODELS`)"),
    ErrorCode("overloaded", 503, "RESOURCE_EXHAUSTED", "admission refused the request: back off for `Retry-After` "
              "(gRPC: `retry-after-ms` metadata and `google.rpc.RetryInfo`)"),
    ErrorCode("deadline_exceeded", 504, "DEADLINE_EXCEEDED", "the request's deadline (`timeout-ms`, "
              "`APP_DEFAULT_TIMEOUT_MS`) passed before it was answered"),
)  # fmt: skip
"""Every machine-readable code, by code; the order is the documentation's (by HTTP status)."""


def codes_with_status(status: int, among: tuple[str, ...] | None = None) -> list[str]:
    """The codes answered with HTTP ``status`` (optionally only those in ``among``), in catalogue order."""
    return [c for c, e in CATALOGUE.items() if e.http_status == status and (among is None or c in among)]


__all__ = [
    "CATALOGUE",
    "DeadlineExceeded",
    "ErrorCode",
    "Forbidden",
    "HeaderTimeout",
    "HeadersTooLarge",
    "InferenceFailed",
    "InvalidInput",
    "ModelNotFound",
    "ModelNotReady",
    "Overloaded",
    "PayloadTooLarge",
    "ServiceError",
    "Unauthorized",
    "codes_with_status",
    "names_hint",
    "UnsupportedMediaType",
]
