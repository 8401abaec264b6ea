"""The error tree: statuses, codes, headers, and the two body shapes (v2 vs task endpoints)."""

from __future__ import annotations

import json

import pytest

from app.api.errors import error_body
from app.errors import (
    DeadlineExceeded,
    Forbidden,
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidInput("x"), 400, "invalid_input"),
        (InvalidInput("x", code="unknown_feature", status=422), 422, "unknown_feature"),
        (PayloadTooLarge("x"), 413, "payload_too_large"),
        (ModelNotFound("x"), 404, "model_not_found"),
        (ModelNotReady("x"), 503, "model_not_ready"),
        (Overloaded("x"), 503, "overloaded"),
        (DeadlineExceeded("x"), 504, "deadline_exceeded"),
        (Unauthorized("x"), 401, "unauthorized"),
        (Forbidden("x"), 403, "forbidden"),
        (InferenceFailed("x"), 500, "inference_failed"),
        (ServiceError("x"), 500, "internal"),
    ],
)
def test_status_and_code(error: ServiceError, status: int, code: str) -> None:
    assert isinstance(error, ServiceError)
    assert (error.status, error.code, error.message) == (status, code, "x")


def test_retry_after_and_auth_headers() -> None:
    assert Overloaded("busy", retry_after_s=2.5).headers == {"Retry-After": "3"}
    assert Overloaded("busy", retry_after_s=0.1).headers == {"Retry-After": "1"}
    assert Unauthorized("no").headers == {"WWW-Authenticate": "Bearer"}
    assert InvalidInput("x").headers == {}


def test_body_shapes() -> None:
    assert json.loads(error_body("/v2/models/m/infer", "invalid_input", "bad")) == {
        "error": "bad",
        "code": "invalid_input",
    }
    assert json.loads(error_body("/v2", "not_found", "m")) == {"error": "m", "code": "not_found"}
    assert json.loads(error_body("/v1/ads/ctr", "invalid_feature", "bad")) == {
        "error": {"code": "invalid_feature", "message": "bad"}
    }
    assert json.loads(error_body("/v2x", "c", "m")) == {"error": {"code": "c", "message": "m"}}


def test_errors_module_does_not_import_a_web_framework() -> None:
    """The error tree is shared by HTTP and gRPC: importing it must not pull in a web framework."""
    import subprocess
    import sys

    code = "import sys, app.errors; print(sorted(m for m in ('fastapi', 'starlette', 'grpc') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
