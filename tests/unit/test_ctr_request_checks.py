"""Per-request CTR checks that run before a request may join a batch (the featurizer runs per batch)."""

from __future__ import annotations

import math

import pytest

from app.errors import InvalidInput
from app.tasks.ctr.schemas import CtrRequest
from app.tasks.ctr.task import CtrTask, check_fields, merge_rows

DENSE = frozenset({"I1", "I2"})
KNOWN = DENSE | {"C1", "C2"}


@pytest.mark.parametrize(
    "fields",
    [
        {"I1": 3, "I2": 2.5, "C1": "68fd1e64", "C2": 7},
        {"I1": "12", "I2": None, "C1": None},
        {"I1": math.nan},  # NaN is "missing" to the featurizer
        {"C1": 10**400},  # categoricals take any scalar
        {},
    ],
)
def test_accepted(fields: dict[str, object]) -> None:
    check_fields(fields, KNOWN, DENSE, "features")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"I3": 1}, "unknown_feature"),
        ({"c1": "x"}, "unknown_feature"),
        ({"I1": "abc"}, "invalid_feature"),
        ({"I1": math.inf}, "invalid_feature"),
        ({"I1": 10**400}, "invalid_feature"),
        ({"I1": True}, "invalid_feature"),
        ({"C1": False}, "invalid_feature"),
        ({"C1": ["a"]}, "invalid_feature"),
        ({"C2": {"a": 1}}, "invalid_feature"),
    ],
)
def test_refused(fields: dict[str, object], code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_fields(fields, KNOWN, DENSE, "features")
    assert info.value.code == code and info.value.status == 422


def test_merge_candidate_wins_and_rows_stay_in_order() -> None:
    req = CtrRequest.model_validate(
        {"context": {"I1": 1, "C1": "a"}, "candidates": [{"ad_id": "x", "features": {"C1": "b"}}, {"ad_id": "y"}]}
    )
    assert merge_rows(req, KNOWN, DENSE) == [{"I1": 1, "C1": "b"}, {"I1": 1, "C1": "a"}]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [(b"{", 400, "invalid_json"), (b'{"candidates": 3}', 422, "invalid_request"), (b"[]", 422, "invalid_request")],
)
def test_parse_errors(body: bytes, status: int, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        CtrTask.routes[0].parse(body)
    assert (info.value.status, info.value.code) == (status, code)
