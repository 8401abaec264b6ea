"""The task adapter protocol (what the generic pipeline needs from a task) and the task spec that finds it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import numpy as np

from app.manifest import DriftReference, TensorSpec
from compress.config import CompressConfig, QuantizeSection, RobustnessSection
from compress.errors import ConfigError
from compress.robustness.flips import RobustnessSet

Feeds = dict[str, np.ndarray]


class Sliceable(Protocol):
    """Rows a task calibrates on: a list of token sequences, an array of histories, ..."""

    def __len__(self) -> int: ...
    def __getitem__(self, key: slice, /) -> Self: ...


Rows = TypeVar("Rows", bound=Sliceable)


def calibration_batches(
    rows: Rows, q: QuantizeSection, feeds: Callable[[Rows], Feeds]
) -> Callable[[], Iterator[Feeds]]:
    """Factory of calibration batches: the first ``calibration_rows`` rows, ``calibration_batch`` at a time, each
    turned into model inputs only when the quantizer asks for it (bounded memory, deterministic)."""
    n = min(q.calibration_rows, len(rows))

    def batches() -> Iterator[Feeds]:
        for i in range(0, n, q.calibration_batch):
            yield feeds(rows[i : i + q.calibration_batch])

    return batches


class TaskAdapter(Protocol):
    """Task-specific steps; everything else (quantization, gate, fallback, latency, publish) is generic.

    Optional hooks (an adapter may define them; the ``task_*`` helpers below supply the default):

    * ``optimize_fp32(src, dst) -> dict``: the FP32 reference graph (default: ORT basic optimisation);
      returns recipe notes.
    * ``predict(sess, feeds, output) -> ndarray``: run held-out rows (default: fixed-size batches).
    * ``latency_feeds(batch_sizes) -> {b: feeds}``: the input timed per batch size (default: held-out rows
      repeated to ``b``); a sequence task returns realistic lengths here.
    * ``drift_reference(model_path) -> DriftReference``: reference distributions of the inputs and of the outputs
      of the version's own model on the test split (:mod:`app.rollout.bins`); without it, no drift reference.
    * ``write_aux(version_dir, model_path) -> {role: path}``: extra files of a published version (tokenizer,
      reply index), written by the version's own model; called before ``write_preprocessing``.
    * ``robustness_set(section) -> RobustnessSet | str``: clean test rows, their perturbed copies and how a
      decision is read (:mod:`compress.robustness`); a string is the reason the task has none for this data.
      Without the hook, the robustness gate is skipped (recorded with that reason).
    """

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    fp32: Any
    """The trained FP32 torch model (set by ``train_fp32``)."""

    def prepare(self, version_dir: Path | None = None) -> None:
        """Read data, split, fit pre-processing (or load it from a published version)."""

    def baseline(self) -> dict[str, float]:
        """A simple non-neural model's test metrics on the same split (the bar the network must beat)."""

    def train_fp32(self) -> Any:
        """Train (or load) the FP32 torch model."""

    def torch_transforms(self) -> dict[str, Callable[[Any], tuple[Any, dict[str, Any]]]]:
        """Named model-level transforms (e.g. 'pruned', 'emb_int8'): model -> (new model, recipe notes)."""

    def eval_feeds(self, split: str) -> Feeds:
        """Model inputs of 'validation' or 'test'."""

    def metrics(self, outputs: np.ndarray, split: str) -> dict[str, float]:
        """Task metrics of model outputs on a split."""

    def calibration(self) -> Callable[[], Iterator[Feeds]]:
        """Factory of calibration batches from training rows (bounded)."""

    def write_preprocessing(self, version_dir: Path) -> dict[str, str]:
        """Write pre-processing state into a version folder; returns kind/path/code_version."""

    def lineage(self) -> dict[str, Any]:
        """Data files with sha256 and the split description."""


@dataclass(frozen=True)
class TaskSpec:
    """What compress knows about a task before its (torch-heavy) adapter is imported; each task's
    ``compress/<task>/config.py`` exposes one as ``SPEC`` and :mod:`compress.registry` finds it."""

    id: str
    """The task id (docs/concepts.md, "Tasks"): ``model.task`` of its configs."""
    config: type[CompressConfig]
    """The config class its TOML files validate against."""
    adapter: str
    """``"module:Class"`` of its :class:`TaskAdapter`, constructed with the config."""
    data_files: Callable[[Any], list[Path]] = field(default=lambda cfg: [cfg.data.resolved_path()])
    """The files a config reads (the demo builds a model only when they exist)."""
    synthetic_data: Callable[[Path, Any], Path] | None = None
    """Writes a SYNTHETIC stand-in for missing data into a folder (the demo's fallback); None = skip the model."""

    def load_adapter(self, cfg: CompressConfig) -> TaskAdapter:
        if not isinstance(cfg, self.config):
            raise ConfigError(
                f"task {self.id!r} needs a {self.config.__name__} (load it with compress.config.load_config)"
            )
        module, _, cls = self.adapter.partition(":")
        adapter: TaskAdapter = getattr(importlib.import_module(module), cls)(cfg)
        return adapter


def task_optimize_fp32(task: TaskAdapter, src: Path, dst: Path) -> dict[str, Any]:
    hook = getattr(task, "optimize_fp32", None)
    if hook is not None:
        return dict(hook(src, dst))
    from compress.onnx_tools import optimize

    optimize(src, dst)
    return {}


def task_predict(task: TaskAdapter, sess: Any, feeds: Feeds, output: str) -> np.ndarray:
    hook = getattr(task, "predict", None)
    if hook is not None:
        return np.asarray(hook(sess, feeds, output))
    from compress.evaluate import predict

    return predict(sess, feeds, output)


def task_latency_feeds(task: TaskAdapter, feeds: Feeds, batch_sizes: list[int]) -> dict[int, Feeds]:
    hook = getattr(task, "latency_feeds", None)
    if hook is not None:
        return dict(hook(batch_sizes))
    from compress.evaluate import tile_rows

    return {b: tile_rows(feeds, b) for b in batch_sizes}


def task_write_aux(task: TaskAdapter, version_dir: Path, model_path: Path) -> dict[str, str]:
    hook = getattr(task, "write_aux", None)
    return dict(hook(version_dir, model_path)) if hook is not None else {}


def task_extra_candidates(task: TaskAdapter, builder: Any, reference: Any) -> list[Any]:
    """Candidates a task builds outside the ONNX step chain (built, evaluated, gated and timed by the task)."""
    hook = getattr(task, "extra_candidates", None)
    return [] if hook is None else list(hook(builder, reference))


def task_drift_reference(task: TaskAdapter, model_path: Path) -> DriftReference | None:
    """The manifest's ``drift`` block: what live traffic is compared with (None when the task records none)."""
    hook = getattr(task, "drift_reference", None)
    return None if hook is None else DriftReference.model_validate(hook(model_path))


def task_robustness_set(task: TaskAdapter, cfg: CompressConfig) -> tuple[RobustnessSet | None, str]:
    """The task's perturbation set, or None and the reason the robustness gate is skipped."""
    if not cfg.robustness.enabled:
        return None, "disabled in the config ([robustness] enabled = false)"
    hook: Callable[[RobustnessSection], RobustnessSet | str] | None = getattr(task, "robustness_set", None)
    if hook is None:
        return None, f"task {cfg.model.task!r} defines no perturbation set (no robustness_set hook)"
    got = hook(cfg.robustness)
    return (None, got) if isinstance(got, str) else (got, "")
