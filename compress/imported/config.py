"""``[model] onnx = ...`` configs: an FP32 model trained elsewhere, its held-out data and the metric to gate on.

The one-liner (``python -m compress import MODEL.onnx --data ... --label ... --metric ...``) builds the same
object, so both forms run one code path. Unknown keys are errors, as in every compress config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from compress.config import (
    GateRule,
    LatencySection,
    PublishSection,
    QuantizeSection,
    RobustnessSection,
    SelectSection,
    _Cfg,
    _fmt_errors,
    check_select_batch_timed,
    flip_significance_field,
    read_toml,
    resolve_path,
)
from compress.errors import ConfigError
from compress.imported.metrics import get_metric

# graph-level candidates tried on an imported model (each may be skipped with a reason); ``pruned`` is listed so
# the report says why structured pruning does not apply; ``fused_gathers`` (compress/imported/fuse.py) applies to
# per-field embedding graphs only
DEFAULT_CANDIDATES = [
    "int8_dynamic_u8",
    "int8_dynamic_s8",
    "int8_qdq",
    "int8_weights",
    "int8_dynamic_s8+int8_weights",
    "fp16",
    "fused_gathers",
    "fused_gathers+int8_dynamic_s8+int8_weights",
    "pruned",
]


class ImportModelSection(_Cfg):
    name: str = Field(description="model name in the repository")
    onnx: str = Field(
        description="the FP32 model: an ONNX file (any exporter), or a TorchScript (torch.jit.save) or torch.export "
        "(torch.export.save, .pt2) program that the pipeline exports to ONNX with example inputs from [data] eval"
    )
    output: str = Field(default="", description="output the metric reads; empty = the first FP32 output")
    vocab: str = Field(
        default="",
        description="feature vocabularies JSON (format shopinfer-ctr-vocab-1): the data files hold raw rows and "
        "the model is published as a ctr version served on /v1/ads/ctr; empty = a raw /v2 model",
    )

    def resolved_path(self) -> Path:
        return resolve_path(self.onnx)

    def vocab_path(self) -> Path | None:
        return resolve_path(self.vocab) if self.vocab else None


class ImportDataSection(_Cfg):
    """Held-out rows (Parquet: a label column and feature columns; NPZ: one array per model input + a label)."""

    eval: str
    calib: str = Field(default="", description="calibration rows; empty = a seeded share of the eval file")
    label: str = Field(description="label column (Parquet) or array (NPZ)")
    features: list[str] = Field(default=[], description="Parquet feature columns in input order; [] = all others")
    group: str = Field(default="", description="query column/array (ndcg@K ranks within it); not a feature")
    calibration_fraction: float = Field(default=0.2, gt=0, lt=1, description="eval share used to calibrate")
    seed: int = 0


class ImportGateSection(_Cfg):
    """One metric versus FP32 on the held-out rows; ``kind``/``value`` default to the metric's own rule."""

    metric: str
    kind: Literal["min_ratio", "max_rel_increase", "max_abs_drop"] | None = None
    value: float | None = None
    fallback: bool = True
    max_fallback_layers: int | None = None
    max_flip_increase: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="robustness rule: a candidate's decision flip rate under perturbed held-out rows may exceed "
        "FP32's by at most this much (0.01 = 1 percentage point)",
    )
    flip_significance: float = flip_significance_field()

    @model_validator(mode="after")
    def _known(self) -> ImportGateSection:
        get_metric(self.metric)
        if (self.kind is None) != (self.value is None):
            raise ValueError("gate.kind and gate.value go together (or leave both out for the metric's default)")
        return self

    @property
    def rules(self) -> list[GateRule]:
        if self.kind is None or self.value is None:
            return [get_metric(self.metric).default_rule()]
        return [GateRule(metric=self.metric, kind=self.kind, value=self.value)]


class ImportConfig(_Cfg):
    model: ImportModelSection
    data: ImportDataSection
    gate: ImportGateSection
    candidates: list[str] = DEFAULT_CANDIDATES
    quantize: QuantizeSection = QuantizeSection()
    latency: LatencySection = LatencySection()
    select: SelectSection = SelectSection()
    publish: PublishSection = PublishSection()
    robustness: RobustnessSection = RobustnessSection()

    @model_validator(mode="after")
    def _select_batch_is_timed(self) -> ImportConfig:
        check_select_batch_timed(self.select, self.latency)
        return self


def parse_import_config(raw: dict[str, Any], source: str = "<dict>") -> ImportConfig:
    try:
        return ImportConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"config {source} is invalid: {_fmt_errors(e)}") from None
    except ConfigError as e:  # an unknown metric, raised inside a validator
        raise ConfigError(f"config {source}: {e}") from None


def load_import_config(path: Path) -> ImportConfig:
    return parse_import_config(read_toml(path), str(path))
