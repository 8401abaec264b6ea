"""A MovieLens-shaped ratings log (tests/fixtures/ratings_gen.py) by config alone: per-user leave-last-N-out,
a positive filter, titles from a second file, and seen items excluded from every evaluated list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compress.config import parse_config
from compress.recommend.config import RecConfig, RecSplitSection
from compress.recommend.data import TEST, VALIDATION, make_split, read_log
from tests.fixtures.ratings_gen import generate


def _config(ratings: Path, movies: Path) -> RecConfig:
    cfg = parse_config(
        {
            "model": {"name": "ratings-rec", "task": "recommendation"},
            "candidates": ["fp32"],
            "data": {
                "path": str(ratings),
                "format": "csv",
                "user": "userId",
                "item": "movieId",
                "timestamp": "timestamp",
                "timestamp_unit": "s",
                "rating": "rating",
                "min_rating": 4.0,
                "items_path": str(movies),
                "items_id": "movieId",
                "items_text": "title",
            },
            "split": {"kind": "leave_last", "leave_last": 1},
            "retrieval": {"exclude_seen": True, "top_k": 20, "shortlist": 20},
        }
    )
    assert isinstance(cfg, RecConfig)
    return cfg


@pytest.fixture(scope="module")
def ratings_cfg(tmp_path_factory: pytest.TempPathFactory) -> RecConfig:
    return _config(*generate(tmp_path_factory.mktemp("ratings"), interactions=6000, seed=1))


def test_positive_filter_keeps_low_ratings_only_as_seen(ratings_cfg: RecConfig) -> None:
    raw = pd.read_csv(ratings_cfg.data.resolved_path())
    log, dropped = read_log(ratings_cfg.data)
    below = int((raw["rating"] < 4.0).sum())
    assert dropped["below_min_rating"] == below > 0, (dropped, below)
    assert int((~log["pos"]).sum()) == below and len(log) == len(raw), "low ratings must stay in the log as seen"


def test_titles_join_from_the_items_file(ratings_cfg: RecConfig) -> None:
    from compress.recommend.task import load_split

    split = load_split(ratings_cfg)
    movies = pd.read_csv(ratings_cfg.data.items_path or "", dtype={"movieId": str}).set_index("movieId")["title"]
    empty = [i for i, t in zip(split.items[1:], split.titles[1:], strict=True) if not t]
    assert not empty, f"{len(empty)} catalogue items have no title, e.g. {empty[:5]}"
    assert all(split.titles[split.index[i]] == movies[i] for i in split.items[1:50])


def test_leave_last_out_holds_out_each_users_last_positive() -> None:
    day = pd.Timestamp("2015-01-01")
    rows = [  # user, item, day, positive
        ("A", "a", 0, True),
        ("A", "b", 400, True),
        ("A", "x", 401, False),
        ("A", "c", 800, True),
        ("A", "y", 801, False),
        ("A", "d", 1200, True),
        ("B", "a", 5, True),
        ("B", "c", 6, True),
        ("C", "d", 7, True),
    ]
    log = pd.DataFrame(
        [{"user": u, "item": i, "ts": day + pd.Timedelta(days=d), "basket": f"{u}{d}", "pos": p} for u, i, d, p in rows]
    )
    split = make_split(log, {}, RecSplitSection(kind="leave_last", leave_last=1), history_len=4)
    ix = split.index
    test, val = split.window(TEST), split.window(VALIDATION)
    assert test.users == ["A"] and [t.tolist() for t in test.targets] == [[ix["d"]]], test
    assert val.users == ["A"] and [t.tolist() for t in val.targets] == [[ix["c"]]], val
    assert test.history[0].tolist() == [ix["c"], ix["b"], ix["a"], 0]
    # every interaction before the user's test item is seen, the low-rated ones too (catalogue items only)
    assert sorted(test.seen[0].tolist()) == sorted(ix[i] for i in ("a", "b", "c") if i in ix)
    assert split.histories(TEST)["B"] == [ix["c"], ix["a"]], "a user too short to hold out only trains"


def test_baselines_never_list_a_seen_item(ratings_cfg: RecConfig) -> None:
    from compress.recommend.baselines import cooccurrence, item_knn, popularity, repeat
    from compress.recommend.task import load_split

    split = load_split(ratings_cfg)
    ex = split.window(TEST)
    assert len(ex) > 50, f"leave-last-out should evaluate most users, got {len(ex)}"
    pop = popularity(split, TEST, 30)
    lists = {
        "item_knn": item_knn(split, TEST, ex, pop, True),
        "cooccurrence": cooccurrence(split, TEST, ex, pop, True),
        "repeat": repeat(ex, pop, True),
    }
    for name, top in lists.items():
        hits = sum(len(np.intersect1d(row[:10], s)) for row, s in zip(top, ex.seen, strict=True))
        assert hits == 0, f"{name}: {hits} seen items in the top 10 lists"


def test_two_tower_clearly_beats_item_knn_and_popularity(tmp_path: Path) -> None:
    """A sparse log (300 users, 2,500 items, ~1.6 % dense), the shape where ID embeddings learn the latent taste
    and item-kNN's co-rating counts are thin. Measured on generator seeds 1-3: the model's recall@10 was 1.46-1.77x
    item-kNN's and its NDCG@10 1.55-2.33x, so the 1.2x bar leaves room without being a coin flip. A dense
    6,000-rating log (100 users, 500 items) is the opposite: item-kNN won there on all three seeds."""
    import torch

    from compress.recommend.task import RecTask
    from compress.recommend.train import evaluate

    cfg = _config(*generate(tmp_path, interactions=12_000, users=300, items=2_500, seed=1))
    task = RecTask(cfg)
    task.prepare()
    base = task.baseline()
    try:
        model = task.train_fp32()
    finally:
        torch.set_num_threads(1)
    got = evaluate(model, task.examples["test"], exclude_seen=True)
    assert task.history["recency_tau_days"] is None, "a leave_last split must weigh every training row the same"
    for m in ("recall@10", "ndcg@10"):
        knn, pop = base[f"item_knn.{m}"], base[f"popularity.{m}"]
        assert got[m] >= 1.2 * knn, f"{m}: two-tower {got[m]:.4f} vs item-kNN {knn:.4f} (wanted >= 1.2x)"
        assert got[m] >= 2 * pop, f"{m}: two-tower {got[m]:.4f} vs recent popularity {pop:.4f} (wanted >= 2x)"
