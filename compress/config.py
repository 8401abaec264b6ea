"""Typed, strict configuration for a compress run, read from TOML.

Unknown keys are errors (a typo must not silently fall back to a default). Paths may use ``${DATA_DIR}``,
which defaults to ``../shared/data`` next to the project checkout and can be set in the environment.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.tasks.ids import canonical
from compress.errors import ConfigError
from compress.settings import DEFAULT_DATA_DIR as DEFAULT_DATA_DIR
from compress.settings import PROJECT_ROOT as PROJECT_ROOT
from compress.settings import compress_settings


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(_Cfg):
    name: str
    task: str = Field(description="task id (docs/concepts.md, 'Tasks'): ctr, chat, recommend, search or a plug-in's")

    @field_validator("task", mode="before")
    @classmethod
    def _task_id(cls, v: Any) -> Any:
        """Configs written with an older task name ('ad_ctr') run as the task id."""
        return canonical(v) if isinstance(v, str) else v


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
    blank_rows: float = Field(
        default=0.02,
        ge=0,
        lt=0.5,
        description="share of training rows shown with every feature missing or unseen (labels kept), so a "
        "request without usable features scores near the base rate; 0 = off",
    )


class PruneSection(_Cfg):
    keep_ratio: float = Field(default=0.75, gt=0, le=1)
    finetune_epochs: int = Field(default=5, ge=0)
    finetune_lr: float = Field(default=2e-4, gt=0)


class QuantizeSection(_Cfg):
    calibration_rows: int = Field(default=2048, ge=1)
    calibration_batch: int = Field(default=256, ge=1)
    per_channel: bool = True
    calibrate_method: Literal["minmax", "percentile", "entropy"] = "minmax"


class QatSection(_Cfg):
    """Quantization-aware fine-tuning of ``int8_qat`` candidates (``compress/qat.py``): short by design."""

    epochs: int = Field(default=2, ge=1, description="fine-tuning epochs with fake quantization")
    lr: float = Field(default=1e-4, gt=0, description="learning rate of the fine-tune (lower than training's)")
    max_rows: int = Field(default=20000, ge=32, description="training rows it sees (seeded subsample)")
    per_channel: bool = Field(default=True, description="INT8 weights with one scale per output channel")
    parity_tolerance: float = Field(
        default=0.05, gt=0, description="max |ONNX - fake-quantized torch| on 256 test rows (first output)"
    )


class GateRule(_Cfg):
    """One accuracy rule versus FP32 on the same held-out rows."""

    metric: str
    kind: Literal["min_ratio", "max_rel_increase", "max_abs_drop"]
    value: float


def flip_significance_field() -> Any:
    """``[gate].flip_significance`` (own and imported models): the robustness rule's chance threshold."""
    return Field(
        default=0.05,
        gt=0,
        le=1,
        description="robustness rule: a candidate over the margin is refused only when its excess flips are unlikely "
        "to be chance (one-sided exact McNemar test on the rows where exactly one of it and FP32 flips, p below "
        "this); 1.0 refuses on any excess over the margin",
    )


class GateSection(_Cfg):
    rules: list[GateRule] = [
        GateRule(metric="auc", kind="min_ratio", value=0.999),
        GateRule(metric="logloss", kind="max_rel_increase", value=0.005),
    ]
    fallback: bool = True
    max_fallback_layers: int | None = None
    max_flip_increase: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="robustness rule: a candidate's decision flip rate under [robustness] perturbations may exceed "
        "FP32's by at most this much (0.01 = 1 percentage point)",
    )
    flip_significance: float = flip_significance_field()


class RobustnessSection(_Cfg):
    """The robustness gate (``compress/robustness``): decision flips under small perturbations of test rows.

    Each task perturbs a seeded sample of its test rows (typos, casing and punctuation, a dropped word; a missing
    or unseen category, jittered numbers; a dropped history item); every candidate and FP32 runs the clean rows
    and the perturbed copies, and ``[gate].max_flip_increase`` bounds how much more often a candidate's decision
    flips than FP32's. ``enabled = false`` for data where the perturbations make no sense (recorded as skipped).
    """

    enabled: bool = Field(default=True, description="measure flip rates and apply the rule; false = skipped")
    rows: int = Field(default=200, ge=1, description="clean test rows perturbed (a seeded sample; all if fewer)")
    seed: int = Field(default=0, description="seed of the row sample and of every perturbation")
    top_k: int = Field(
        default=10, ge=1, description="ranking tasks (search, recommend): a flip is a changed set of the top_k results"
    )


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
    robustness: RobustnessSection = RobustnessSection()
    qat: QatSection = QatSection()
    latency: LatencySection = LatencySection()
    select: SelectSection = SelectSection()
    engine: EngineSection = EngineSection()
    publish: PublishSection = PublishSection()

    @model_validator(mode="after")
    def _select_batch_is_timed(self) -> CompressConfig:
        check_select_batch_timed(self.select, self.latency)
        return self


def check_select_batch_timed(select: SelectSection, latency: LatencySection) -> None:
    """The selection compares latencies at ``select.batch_size``: that size must be one the run times."""
    if select.batch_size not in latency.batch_sizes:
        raise ValueError(
            f"select.batch_size {select.batch_size} is not one of latency.batch_sizes "
            f"{latency.batch_sizes}: the selection compares latencies measured there"
        )


class ExportSection(_Cfg):
    fp32_optimizer: Literal["basic", "transformer"] = Field(
        default="transformer", description="FP32 graph: ORT basic rewrites, or the ORT transformer optimizer's fusions"
    )


def resolve_path(raw: str) -> Path:
    """Expand ``${DATA_DIR}`` (default: the shared data folder beside the project) and ``~``."""
    expanded = raw.replace("${DATA_DIR}", str(compress_settings().data_dir))
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
    from compress.registry import config_class  # the task config modules import this one

    model = raw.get("model")
    task = model.get("task") if isinstance(model, dict) else None
    try:
        cls = config_class(task) if isinstance(task, str) else CompressConfig
    except ConfigError as e:
        raise ConfigError(f"config {source} is invalid: {e}") from None
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"config {source} is invalid: {_fmt_errors(e)}") from None


def load_config(path: Path) -> CompressConfig:
    """Read and validate a TOML config; every problem becomes one ``ConfigError`` line."""
    return parse_config(read_toml(path), str(path))


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table; a missing or malformed file is one ``ConfigError`` line."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
