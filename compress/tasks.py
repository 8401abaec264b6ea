"""The task adapter protocol: what the generic pipeline needs from a task (CTR, chatbot, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.manifest import TensorSpec
from compress.config import CompressConfig

Feeds = dict[str, np.ndarray]


class TaskAdapter(Protocol):
    """Task-specific steps; everything else (quantization, gate, fallback, latency, publish) is generic."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

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


def get_task(cfg: CompressConfig) -> TaskAdapter:
    if cfg.model.task == "ad_ctr":
        from compress.ctr.task import CtrTask

        return CtrTask(cfg)
    raise NotImplementedError(f"task {cfg.model.task!r} has no compress adapter yet")
