"""The model-repository contract shared by ``compress`` (writer) and the service (reader).

A published version lives in ``<repo>/<model>/<version>/`` and is described by ``manifest.json``, which is
written last. This module is pydantic-only so both sides can import it cheaply. The JSON Schema checked in at
``model_repo/manifest.schema.json`` is generated from :class:`Manifest` and compared by a test.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.tasks.ids import canonical

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1
# Model names become directory names: keep them to a safe alphabet so no name can escape the repository.
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

DType = Literal["FP32", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES"]
TASK_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
"""A task id (``ctr``, ``chat``, ``recommend``, ``search``, a plug-in task's id) or ``generic`` (no task)."""


def _inside_version(path: str) -> str:
    if not path or path.startswith("/") or "\\" in path or ".." in path.split("/"):
        raise ValueError(f"file path {path!r} must be relative and inside the version folder")
    return path


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IndexBounds(_Strict):
    """Valid values of an index input (e.g. embedding-table row ids): ``low <= id < high``.

    ``high`` has one entry per column of the last axis (one table per field), or a single entry for all columns.
    The service refuses ids outside them before batching (400 ``index_out_of_range``): out-of-range ids would
    fail the model (and with it the whole batch) or, negative, silently wrap around.
    """

    low: int = 0
    high: list[int] = Field(min_length=1)


class TensorSpec(_Strict):
    """One named input or output; ``-1`` marks a variable axis (the batch axis first)."""

    name: str
    dtype: DType
    shape: list[int]
    index_bounds: IndexBounds | None = None
    """Integer inputs only: the ids the model's tables accept (checked on every request)."""

    @field_validator("shape")
    @classmethod
    def _dims(cls, v: list[int]) -> list[int]:
        if any(d < -1 or d == 0 for d in v):
            raise ValueError(f"shape {v}: dims must be positive or -1 (variable)")
        return v

    @model_validator(mode="after")
    def _bounds_fit(self) -> TensorSpec:
        b = self.index_bounds
        if b is None:
            return self
        if self.dtype not in ("INT64", "INT32", "INT8", "UINT8"):
            raise ValueError(f"{self.name}: index_bounds need an integer dtype, not {self.dtype}")
        last = self.shape[-1] if self.shape else -1
        if len(b.high) != 1 and len(b.high) != last:
            raise ValueError(f"{self.name}: index_bounds.high has {len(b.high)} entries for a last axis of {last}")
        if any(h <= b.low for h in b.high):
            raise ValueError(f"{self.name}: every index_bounds.high must exceed low={b.low}")
        return self


class Artifact(_Strict):
    """A loadable model file of this version. TensorRT plans are only usable on the GPU/TRT they were built for."""

    path: str
    format: Literal["onnx", "tensorrt"]
    precision: str = Field(description="e.g. fp32, int8-dynamic, int8-qdq, int8-emb+int8-qdq")
    sha256: str
    bytes: int
    compute_capability: str | None = Field(default=None, description="TensorRT only, e.g. '9.0'")
    tensorrt_version: str | None = Field(default=None, description="TensorRT only")

    @model_validator(mode="after")
    def _trt_keys(self) -> Artifact:
        if self.format == "tensorrt" and not (self.compute_capability and self.tensorrt_version):
            raise ValueError("a tensorrt artifact needs compute_capability and tensorrt_version")
        return self

    _relative = field_validator("path")(classmethod(lambda cls, v: _inside_version(v)))


class AuxFile(_Strict):
    """A non-model file the version needs (pre-processing state, tokenizer, reply index)."""

    path: str
    role: str
    sha256: str
    bytes: int

    _relative = field_validator("path")(classmethod(lambda cls, v: _inside_version(v)))


class Preprocessing(_Strict):
    """How raw request fields become model inputs: ``kind`` names the code path (same as training)."""

    kind: str = Field(description="the task id whose code reads the state, e.g. 'ctr' -> app.tasks.ctr")
    path: str = Field(description="state file among aux_files")
    code_version: str

    @field_validator("kind", mode="before")
    @classmethod
    def _task_id(cls, v: Any) -> Any:
        """Versions published with an older kind name ('ctr-v1') load as the task id."""
        return canonical(v) if isinstance(v, str) else v


class Gate(_Strict):
    passed: bool
    rule: str
    numbers: dict[str, float]
    reason: str = ""


class Robustness(_Strict):
    """The robustness gate's result for this version: how often its decision flips under small input perturbations.

    ``flip_rate`` is the share of perturbed test rows whose decision differs from the same model's decision on
    the clean row; the rule is ``flip_rate <= fp32_flip_rate + max_increase`` (``limit``), unless the excess is
    chance: ``p_value`` (one-sided exact McNemar test on ``only_candidate_flips`` vs ``only_fp32_flips``, the rows
    where exactly one of the two flips) at or above ``significance``; ``margin`` is ``limit - flip_rate``.
    ``status`` ``skipped`` carries the ``reason`` (disabled, or no perturbation set for the task or graph).
    """

    status: Literal["reference", "passed", "failed", "not_measured", "skipped"]
    reason: str = ""
    flip_rate: float | None = None
    fp32_flip_rate: float | None = None
    max_increase: float | None = None
    limit: float | None = None
    margin: float | None = None
    significance: float | None = None
    only_candidate_flips: int | None = None
    only_fp32_flips: int | None = None
    p_value: float | None = None
    by_kind: dict[str, float] = {}
    decision: str = Field(default="", description="what a flip is: argmax (intent), pair_order (pCTR), top-10")
    clean_rows: int | None = None
    perturbed_rows: int | None = None
    kinds: list[str] = []
    definition: str = ""


class DataFile(_Strict):
    path: str
    sha256: str
    rows: int | None = None


class Lineage(_Strict):
    parent_version: int | None = None
    data_files: list[DataFile] = []
    code_version: str
    split: dict[str, Any] = {}


class Serving(_Strict):
    """Batching defaults for this version; the service may override them by settings."""

    max_batch_rows: int = Field(default=512, ge=1)
    max_queue_delay_us: int = Field(default=0, ge=0)
    queue_cap_rows: int = Field(default=8192, ge=1)
    warmup_batch_sizes: list[int] = [1, 8, 64, 512]
    queue_budget_ms: float | None = Field(default=None, gt=0)
    """Admission: the queue time a request may expect before it is refused (503); settings may override."""


class DriftFeature(_Strict):
    """The reference distribution of one observed value, binned: live values fall into the same bins.

    ``numeric``: ``edges`` are the inner bin edges (bin ``i`` holds ``edges[i-1] < x <= edges[i]``), then one bin
    above the last edge, then one for missing values. ``categorical``: one bin per value of ``values`` (the most
    frequent ones), then one for any other value, then one for missing values.
    """

    name: str
    role: Literal["input", "output"]
    kind: Literal["numeric", "categorical"]
    edges: list[float] = []
    values: list[str] = []
    proportions: list[float] = Field(min_length=2)
    tensor: str | None = None
    """The output tensor whose first column is this value (observed on KServe v2 answers too), if any."""

    @model_validator(mode="after")
    def _bins_fit(self) -> DriftFeature:
        bins = (len(self.edges) if self.kind == "numeric" else len(self.values)) + 2
        if len(self.proportions) != bins:
            raise ValueError(f"drift feature {self.name}: {len(self.proportions)} proportions for {bins} bins")
        if self.kind == "numeric" and any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"drift feature {self.name}: edges must increase")
        return self


class DriftReference(_Strict):
    """Distributions of inputs and outputs on the held-out split, for population-stability checks on live traffic."""

    split: str = "test"
    rows: int = Field(ge=1)
    features: list[DriftFeature] = Field(min_length=1)


class Manifest(_Strict):
    """Everything needed to verify, load, warm up and serve one immutable model version."""

    schema_version: int = SCHEMA_VERSION
    name: str
    version: int = Field(ge=1)
    task: str = Field(description="task id (docs/concepts.md, 'Tasks'), or 'generic' for a model without one")
    created_at: datetime
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    artifacts: list[Artifact]
    aux_files: list[AuxFile] = []
    preprocessing: Preprocessing | None = None
    metrics: dict[str, dict[str, float]] = Field(
        description="{'candidate': {...}, 'fp32': {...}} task metrics on the same held-out rows"
    )
    latency: dict[str, float] = Field(default={}, description="ms per batch, keyed by batch size as string")
    gate: Gate
    recipe: dict[str, Any]
    lineage: Lineage
    serving: Serving = Serving()
    candidate: str = Field(description="the compress candidate this version was built from")
    drift: DriftReference | None = None
    """Reference distributions for drift monitoring; without one, the service reports drift as unavailable."""
    robustness: Robustness | None = None
    """The robustness gate's result (flip rates under perturbations); None in versions published before it."""

    @field_validator("task", mode="before")
    @classmethod
    def _task_id(cls, v: Any) -> Any:
        """Versions published with an older task name ('ad_ctr') load as the task id."""
        v = canonical(v) if isinstance(v, str) else v
        if isinstance(v, str) and not TASK_ID_RE.match(v):
            raise ValueError(f"task {v!r} must match {TASK_ID_RE.pattern}")
        return v

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not MODEL_NAME_RE.match(v):
            raise ValueError(f"model name {v!r} must match {MODEL_NAME_RE.pattern}")
        return v

    @model_validator(mode="after")
    def _has_artifact(self) -> Manifest:
        if not self.artifacts:
            raise ValueError("a manifest needs at least one artifact")
        return self

    def artifact(self, fmt: str = "onnx") -> Artifact:
        """The first artifact of ``fmt``; raises KeyError if none."""
        for a in self.artifacts:
            if a.format == fmt:
                return a
        raise KeyError(f"version {self.name}/{self.version} has no {fmt} artifact")

    def aux(self, role: str) -> AuxFile:
        for f in self.aux_files:
            if f.role == role:
                return f
        raise KeyError(f"version {self.name}/{self.version} has no aux file with role {role!r}")


if __name__ == "__main__":  # regenerate model_repo/manifest.schema.json
    import json

    print(json.dumps(Manifest.model_json_schema(), indent=2))
