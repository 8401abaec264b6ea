"""Per-request CTR checks that run before a request may join a batch (the featurizer runs per batch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.errors import InvalidInput
from app.tasks.ctr.features import CtrFeaturizer
from app.tasks.ctr.raw import CAT_RAW, DENSE_RAW, raw_arrays, request_arrays
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


def _featurizer() -> CtrFeaturizer:
    cols = {"I1": ["1", "3", ""], "I2": ["0", "2", "7"], "C1": ["a", "a", "b"], "C2": ["7", "7", "8"]}
    return CtrFeaturizer(["I1", "I2"], ["C1", "C2"], min_freq=1).fit(cols)


def _graph_task() -> CtrTask:
    return CtrTask(_featurizer(), "pctr", raw_session=object())  # only request_tensors runs: no session call


PLAIN_CANDIDATES: list[dict[str, object]] = [
    {"I1": 3, "I2": 2.5, "C1": "b", "C2": 8},
    {"I1": None, "C1": None},  # explicit null overrides the context
    {},  # the context alone
    {"I2": -5, "C1": " a ", "C2": 7.0},  # whitespace, a float-valued category
    {"I1": 10**300, "C2": 10**400},  # within float range; categoricals take any int
]


@pytest.mark.parametrize("context", [{}, {"I1": 1, "C1": "ctx", "C2": "9"}])
def test_request_arrays_equal_the_merged_rows(context: dict[str, object]) -> None:
    req = CtrRequest.model_validate(
        {"context": context, "candidates": [{"ad_id": f"a{i}", "features": f} for i, f in enumerate(PLAIN_CANDIDATES)]}
    )
    f = _featurizer()
    fast = request_arrays(req.context, [c.features for c in req.candidates], f)
    assert fast is not None, "plain JSON numbers and strings should take the direct path"
    ref = raw_arrays(merge_rows(req, KNOWN, DENSE), f)
    assert np.array_equal(fast[DENSE_RAW], ref[DENSE_RAW], equal_nan=True), f"{fast[DENSE_RAW]} != {ref[DENSE_RAW]}"
    assert fast[CAT_RAW].tolist() == ref[CAT_RAW].tolist(), f"{fast[CAT_RAW]} != {ref[CAT_RAW]}"


@pytest.mark.parametrize(
    "features",
    [{"I1": "12"}, {"I1": "abc"}, {"I1": math.inf}, {"I1": 10**400}, {"I1": True}, {"C1": False}, {"C1": ["a"]}],
)
def test_request_arrays_leave_judgement_to_the_checked_path(features: dict[str, object]) -> None:
    assert request_arrays({}, [{"I2": 1}, features], _featurizer()) is None, f"{features} took the direct path"


@pytest.mark.parametrize(
    ("context", "features", "code"),
    [
        ({}, {"I3": 1}, "unknown_feature"),
        ({}, {"I1": "abc"}, "invalid_feature"),
        ({}, {"C1": ["a"]}, "invalid_feature"),
        ({"I1": math.inf}, {"I1": 1}, "invalid_feature"),  # a bad context value is refused even when overridden
        ({"C9": 1}, {}, "unknown_feature"),
        ({}, {"C1": 10**5000}, "invalid_feature"),  # beyond what str() converts: refused, not a 500
    ],
)
def test_request_tensors_refuse_like_merge_rows(
    context: dict[str, object], features: dict[str, object], code: str
) -> None:
    req = CtrRequest.model_validate({"context": context, "candidates": [{"ad_id": "a", "features": features}]})
    with pytest.raises(InvalidInput) as info:
        _graph_task().request_tensors(req)
    assert (info.value.code, info.value.status) == (code, 422), f"{info.value.code} {info.value.status}"


def test_request_tensors_accept_numeric_text_through_the_checked_path() -> None:
    req = CtrRequest.model_validate({"candidates": [{"ad_id": "a", "features": {"I1": " 12 ", "C1": "a"}}]})
    out = _graph_task().request_tensors(req)
    assert out is not None and out[DENSE_RAW].tolist()[0][0] == 12.0, f"{out}"
