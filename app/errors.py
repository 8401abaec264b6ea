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
"""

from __future__ import annotations

import math


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


__all__ = [
    "DeadlineExceeded",
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
    "UnsupportedMediaType",
]
