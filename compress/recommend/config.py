"""Config sections of ``task = "recommend"``: any interaction log (user, item, time, ...) described by ``[data]``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from compress.config import CompressConfig, GateRule, GateSection, LatencySection, SelectSection, _Cfg
from compress.tasks import TaskSpec


class RecDataSection(_Cfg):
    """One interaction per row. Only ``user``, ``item`` and ``timestamp`` are required; the rest is optional.

    Rows are dropped when ``quantity`` <= 0 (returns), ``price`` <= 0, the basket id starts with one of
    ``drop_basket_prefixes`` (cancellations), or the item id does not match ``item_pattern`` (postage, fees...).
    Without a ``basket`` column, a basket is one user's interactions sharing a timestamp.
    """

    path: str
    format: Literal["parquet", "csv", "tsv"] = "parquet"
    user: str
    item: str
    timestamp: str
    timestamp_unit: Literal["datetime", "s", "ms"] = Field(
        default="datetime", description="'datetime' (parsed) or a numeric epoch in seconds / milliseconds"
    )
    basket: str | None = None
    quantity: str | None = None
    price: str | None = None
    text: str | None = Field(default=None, description="item title column (returned by the endpoint)")
    item_pattern: str | None = Field(default=None, description="regex item ids must match (full match)")
    drop_basket_prefixes: list[str] = []
    rating: str | None = Field(default=None, description="explicit rating column (read by `min_rating`)")
    min_rating: float | None = Field(
        default=None,
        description="positive interactions: rows with `rating` >= this train the model and are the targets; "
        "the others only count as seen (`[retrieval] exclude_seen`)",
    )
    items_path: str | None = Field(
        default=None, description="a second file with one row per item (titles); `${DATA_DIR}` expands"
    )
    items_format: Literal["parquet", "csv", "tsv"] = "csv"
    items_id: str | None = Field(default=None, description="item id column of `items_path` (joins `item`)")
    items_text: str | None = Field(default=None, description="title column of `items_path` (wins over `text`)")
    synthetic: bool = False

    @model_validator(mode="after")
    def _pairs(self) -> RecDataSection:
        if self.min_rating is not None and not self.rating:
            raise ValueError("[data].min_rating needs [data].rating (the column it applies to)")
        if self.items_path and not (self.items_id and self.items_text):
            raise ValueError("[data].items_path needs items_id and items_text (the join key and the title column)")
        return self

    def resolved_path(self) -> Path:
        from compress.config import resolve_path

        return resolve_path(self.path)


class RecSplitSection(_Cfg):
    """``time``: one global cut, the last ``test_days`` are test, the ``validation_days`` before them validation.
    ``leave_last``: per user, the last ``leave_last`` positive baskets are test and the ``leave_last`` before
    them validation (users with fewer than ``2 * leave_last + 1`` baskets only train): every active user is
    evaluated, whenever they were active (a log of users rating in bursts over years)."""

    kind: Literal["time", "leave_last"] = Field(default="time", description="`time` (global cut) or `leave_last`")
    leave_last: int = Field(default=1, ge=1, description="`leave_last`: baskets per user held out for test")
    test_days: int = Field(default=28, ge=1)
    validation_days: int = Field(default=28, ge=1)
    popularity_days: int = Field(
        default=30, ge=1, description="window of the recent-popularity baseline (ends where training data ends)"
    )


class RecTrainSection(_Cfg):
    seed: int = 0
    threads: int = Field(
        default=1,
        ge=1,
        description="torch threads for training: on 2 shared cores, 2 threads ran 8-12x slower per batch than 1",
    )
    dim: int = Field(default=64, ge=4)
    hidden: int = Field(default=128, ge=4)
    history_len: int = Field(default=64, ge=2, description="most recent history items the user tower reads")
    epochs: int = Field(default=20, ge=1)
    patience: int = Field(default=3, ge=1)
    batch_size: int = Field(default=256, ge=8)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    recency_tau_days: float | None = Field(
        default=None,
        gt=0,
        description="training examples weighted exp(-age/tau); unset: 90 on a `time` split, none on `leave_last` "
        "(each user's held-out rows end their own history, years apart: a global age would mute most users)",
    )
    max_examples: int | None = Field(default=None, ge=100, description="cap (most recent) training baskets: CI")


class RetrievalSection(_Cfg):
    top_k: int = Field(default=100, ge=1, description="ids the graph returns per row (the endpoint's max k)")
    shortlist: int = Field(default=256, ge=1, description="PQ candidates re-scored exactly")
    pq_subspaces: int = Field(default=8, ge=1)
    pq_centroids: int = Field(default=256, ge=2, le=256)
    max_exclude: int = Field(default=200, ge=1, description="ids a request may exclude")
    exclude_seen: bool = Field(
        default=False,
        description="never recommend an item the user already has (any interaction, any rating, whole known "
        "history): applied in evaluation, baselines included, and in serving (a seen set shipped per version)",
    )
    history_cap: int = Field(default=100, ge=1, description="events kept per user in the feature store")
    history_ttl_s: int = Field(default=90 * 86400, ge=1)
    scale_items: int = Field(default=1_000_000, ge=1000, description="SYNTHETIC catalogue size of the scale timing")
    ann: list[Literal["ivf_flat", "ivf_pq_fastscan", "hnsw"]] = Field(
        default=["ivf_flat", "ivf_pq_fastscan", "hnsw"],
        description="ANN index candidates (faiss; user tower in ONNX, shortlist re-scored by the INT8 table)",
    )
    ann_nlist: int = Field(default=0, ge=0, description="IVF lists; 0 = 4 x sqrt(items)")
    ann_nprobe: int = Field(default=16, ge=1, description="IVF lists searched per query")
    ann_pq_dims: int = Field(default=2, ge=1, description="vector dims per 4-bit fast-scan PQ code")
    hnsw_m: int = Field(default=32, ge=4, description="HNSW graph degree")
    hnsw_ef_search: int = Field(default=128, ge=1, description="HNSW search breadth")


def _rec_rules() -> list[GateRule]:
    return [
        GateRule(metric="recall@10", kind="min_ratio", value=0.99),
        GateRule(metric="ndcg@10", kind="min_ratio", value=0.99),
    ]


def recency_tau(cfg: RecConfig) -> float | None:
    """``[train].recency_tau_days`` as used: the split's default when unset (None = every row weighs the same)."""
    if cfg.train.recency_tau_days is not None:
        return cfg.train.recency_tau_days
    return 90.0 if cfg.split.kind == "time" else None


class RecConfig(CompressConfig):
    """``recommend``: an interaction log, a temporal split, a two-tower model with in-graph top-K retrieval."""

    data: RecDataSection  # type: ignore[assignment]
    split: RecSplitSection = RecSplitSection()  # type: ignore[assignment]
    train: RecTrainSection = RecTrainSection()  # type: ignore[assignment]
    retrieval: RetrievalSection = RetrievalSection()
    gate: GateSection = GateSection(rules=_rec_rules())
    latency: LatencySection = LatencySection(batch_sizes=[1, 32, 256])
    select: SelectSection = SelectSection(batch_size=32)

    @model_validator(mode="after")
    def _shortlist(self) -> RecConfig:
        if self.retrieval.shortlist < self.retrieval.top_k:
            raise ValueError("retrieval.shortlist must be >= retrieval.top_k")
        return self


SPEC = TaskSpec(id="recommend", config=RecConfig, adapter="compress.recommend.task:RecTask")
