"""CTR pre-processing: one code path for training columns and serving records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.tasks.ctr.features import MISSING_ID, RARE_ID, CtrFeaturizer, FeatureError, cat_key


def fitted() -> CtrFeaturizer:
    cols = {"I1": ["1", "3", "", "-5", "100"], "C1": ["a", "a", "b", "", "0012"], "C2": ["7", "7", "7", "8", "8"]}
    return CtrFeaturizer(["I1"], ["C1", "C2"], min_freq=2).fit(cols)


def test_categorical_keys_are_canonical() -> None:
    assert cat_key(5) == cat_key("5") == cat_key(5.0) == "5"
    assert cat_key("0012") == "0012"  # codes keep their leading zeros
    assert cat_key(None) is cat_key(float("nan")) is cat_key("  ") is None


def test_records_and_columns_give_identical_features() -> None:
    f = fitted()
    records: list[dict[str, Any]] = [{"I1": 3, "C1": "a", "C2": 8}, {"I1": None, "C2": "7"}, {"C1": "zzz"}]
    cols: dict[str, list[Any]] = {"I1": [3, None, None], "C1": ["a", None, "zzz"], "C2": [8, "7", None]}
    a, b = f.transform_records(records), f.transform_columns(cols, 3)
    np.testing.assert_array_equal(a["dense"], b["dense"])
    np.testing.assert_array_equal(a["sparse"], b["sparse"])
    assert a["sparse"][2].tolist() == [RARE_ID, MISSING_ID]  # unseen -> rare bucket, absent -> missing
    assert a["sparse"].dtype == np.int64 and a["dense"].dtype == np.float32


def test_min_frequency_bucket_and_dense_transform() -> None:
    f = fitted()
    assert f.vocab == {"C1": ["a"], "C2": ["7", "8"]}  # 'b' and '0012' seen once -> rare
    x = f.transform_records([{"I1": -5}, {"I1": 0}])["dense"]
    assert x[0, 0] == x[1, 0]  # negatives clip to 0 before log1p
    mean = np.mean([math.log1p(v) for v in (1, 3, 0, 100)])
    missing = f.transform_records([{"I1": None}])["dense"][0, 0]
    assert missing == pytest.approx(0.0) and f.dense_mean[0] == pytest.approx(mean)


@pytest.mark.parametrize("bad", ["abc", True, float("inf")])
def test_bad_dense_values_raise_feature_error(bad: object) -> None:
    with pytest.raises(FeatureError, match="I1"):
        fitted().transform_records([{"I1": bad}])


def test_state_round_trips(tmp_path: Path) -> None:
    f = fitted()
    f.save(tmp_path / "p.json")
    g = CtrFeaturizer.load(tmp_path / "p.json")
    rec = [{"I1": 7, "C1": "a", "C2": "8"}]
    np.testing.assert_array_equal(f.transform_records(rec)["sparse"], g.transform_records(rec)["sparse"])
    np.testing.assert_array_equal(f.transform_records(rec)["dense"], g.transform_records(rec)["dense"])
