"""The recommendation pipeline on the real Online Retail log (CI config), and a second, differently shaped log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest

from compress.config import parse_config
from compress.recommend.config import RecConfig
from tests.fixtures.checks import expect_robustness
from tests.fixtures.compress_run import CompressRun


def _manifest(run: CompressRun, version: int) -> dict[str, Any]:
    return dict(json.loads((run.repo / run.cfg.model.name / str(version) / "manifest.json").read_text()))


def test_publishes_a_gated_compressed_model_that_beats_every_baseline(rec_compress_run: CompressRun) -> None:
    man = _manifest(rec_compress_run, 2)
    assert man["preprocessing"]["kind"] == "recommend"
    assert {a["role"] for a in man["aux_files"]} >= {"preprocess", "histories", "report"}
    cand, fp32, base = man["metrics"]["candidate"], man["metrics"]["fp32"], man["metrics"]["baseline"]
    for m in ("recall@10", "ndcg@10"):
        assert cand[m] >= 0.99 * fp32[m]
        for b in ("popularity", "cooccurrence", "repeat"):
            assert cand[m] > base[f"{b}.{m}"], (m, b, cand[m], base[f"{b}.{m}"])
    assert man["recipe"]["item_table_compression"] >= 3.5
    assert man["lineage"]["split"]["kind"] == "temporal"
    assert man["lineage"]["split"]["cleaning"]["non_product_item"] > 0
    expect_robustness(rec_compress_run.repo, rec_compress_run.cfg.model.name, [1, 2], {"drop_history_item"})


def test_one_batched_call_returns_top_k_for_every_row(rec_compress_run: CompressRun) -> None:
    path = rec_compress_run.repo / rec_compress_run.cfg.model.name / "2" / "model.onnx"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"TopK", "Einsum"} <= ops
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    L = rec_compress_run.cfg.train.history_len
    hist = np.zeros((3, L), np.int64)
    hist[0, :3], hist[1, :1] = [5, 6, 7], [9]
    excl = np.array([[0, 0], [0, 0], [0, 0]], np.int64)
    ids, scores = sess.run(None, {"history": hist, "exclude": excl})
    k = rec_compress_run.cfg.retrieval.top_k
    assert ids.shape == scores.shape == (3, k)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # excluding row 0's best item removes it and leaves the rest of the order intact
    excl[0, 0] = ids[0, 0]
    ids2, _ = sess.run(None, {"history": hist, "exclude": excl})
    assert ids[0, 0] not in ids2[0]
    assert list(ids2[0, : k - 1]) == list(ids[0, 1:])


def _second_log(src: Path, dst: Path) -> Path:
    """A differently shaped log: CSV, other column names, epoch-second timestamps, no basket/quantity/text."""
    df = pd.read_parquet(src, columns=["CustomerID", "StockCode", "InvoiceDate", "Quantity"])
    df = df[(df["Quantity"] > 0) & df["CustomerID"].notna()]
    df = df[df["CustomerID"].astype(int) % 4 == 0]  # a quarter of the customers: a different, smaller shop
    out = pd.DataFrame(
        {
            "shopper": "s" + df["CustomerID"].astype(int).astype(str),
            "sku": df["StockCode"],
            "epoch": df["InvoiceDate"].astype("int64") // 10**9,
        }
    )
    out.to_csv(dst, index=False)
    return dst


def test_a_differently_shaped_log_runs_by_config_alone(rec_config: RecConfig, tmp_path: Path) -> None:
    from compress.pipeline import run

    log = _second_log(rec_config.data.resolved_path(), tmp_path / "shop.csv")
    cfg = parse_config(
        {
            "model": {"name": "shop-rec", "task": "recommendation"},
            "candidates": ["fp32", "table_int8"],
            "data": {
                "path": str(log),
                "format": "csv",
                "user": "shopper",
                "item": "sku",
                "timestamp": "epoch",
                "timestamp_unit": "s",
            },
            "split": {"test_days": 21, "validation_days": 21},
            "train": {"epochs": 1, "dim": 16, "hidden": 16, "history_len": 16, "max_examples": 1000, "threads": 1},
            "retrieval": {"top_k": 20, "shortlist": 20},
            "latency": {"batch_sizes": [1, 32], "repeats": 5},
            "engine": {"enabled": False},
            "select": {"batch_size": 32, "min_compression": 1.0},
        }
    )
    result = run(cfg, tmp_path / "repo", workdir=tmp_path / "work")
    assert result.selected is not None and result.selected.name == "table_int8"
    man = json.loads((tmp_path / "repo" / "shop-rec" / "2" / "manifest.json").read_text())
    assert man["lineage"]["split"]["test_customers"] > 50
    assert man["metrics"]["candidate"]["recall@10"] > 0.0
    assert man["lineage"]["split"]["cleaning"]["rows_read"] == len(pd.read_csv(log))


def test_training_rows_are_earlier_baskets_newest_first() -> None:
    """The split's example builder on a hand-made log: what each row's history and target must be."""
    from compress.recommend.config import RecSplitSection
    from compress.recommend.data import make_split

    day = pd.Timestamp("2011-01-01")
    rows = [
        ("A", "x", 0, "a1"),
        ("A", "y", 0, "a1"),
        ("A", "z", 2, "a2"),
        ("B", "y", 2, "b1"),
        ("A", "x", 4, "a3"),
        ("A", "w", 4, "a3"),
        ("B", "z", 5, "b2"),
        ("C", "x", 9, "c1"),
    ]
    log = pd.DataFrame([{"user": u, "item": i, "ts": day + pd.Timedelta(days=d), "basket": b} for u, i, d, b in rows])
    split = make_split(log, {}, RecSplitSection(test_days=1, validation_days=1), history_len=3)
    ix = split.index
    ex = split.training(day + pd.Timedelta(days=6), None)
    # most recent first: B's 2nd basket (day 5), A's 3rd (day 4), A's 2nd (day 2); first baskets have no history
    assert ex.history.tolist() == [[ix["y"], 0, 0], [ix["z"], ix["y"], ix["x"]], [ix["y"], ix["x"], 0]]
    assert [t.tolist() for t in ex.targets] == [[ix["z"]], sorted([ix["x"], ix["w"]]), [ix["z"]]]
    assert ex.age_days.tolist() == [1.0, 2.0, 4.0]
    assert split.training(day + pd.Timedelta(days=6), 2).history.tolist() == ex.history.tolist()[:2]
    assert split.histories(day + pd.Timedelta(days=6)) == {"A": [ix["w"], ix["x"], ix["z"]], "B": [ix["z"], ix["y"]]}


@pytest.mark.parametrize("bad, msg", [({"user": None}, "user"), ({"timestamp_unit": "days"}, "timestamp_unit")])
def test_rec_config_errors_are_one_line(bad: dict[str, Any], msg: str) -> None:
    from compress.errors import ConfigError

    data = {"path": "x.parquet", "user": "u", "item": "i", "timestamp": "t", **bad}
    with pytest.raises(ConfigError, match=msg):
        parse_config({"model": {"name": "r", "task": "recommendation"}, "candidates": ["fp32"], "data": data})
