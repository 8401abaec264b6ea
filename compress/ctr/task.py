"""CTR task adapter: data preparation, FP32 training, torch-level transforms and evaluation hooks."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.manifest import DriftReference, IndexBounds, TensorSpec
from app.tasks.ctr.features import CODE_VERSION, KIND, CtrFeaturizer
from compress.config import CompressConfig, RobustnessSection
from compress.data import Split, data_file_record, labels, read_table, split_rows
from compress.errors import ConfigError
from compress.metrics import binary_metrics
from compress.robustness.flips import RobustnessSet

PREPROCESS_FILE = "preprocess.json"


class CtrTask:
    """DeepFM on a CTR log described by ``[data]``; inputs ``dense``/``sparse``, output ``pctr``."""

    def __init__(self, cfg: CompressConfig) -> None:
        self.cfg = cfg
        self.inputs: list[TensorSpec] = []
        self.outputs = [TensorSpec(name="pctr", dtype="FP32", shape=[-1, 1])]
        self.fp32: Any = None

    def prepare(self, version_dir: Path | None = None) -> None:
        """Read the log, split it, fit pre-processing on training rows only, and transform every split.

        With ``version_dir``, the published pre-processing state is loaded instead of fitted (``evaluate``).
        """
        from compress.ctr.train import Arrays

        d = self.cfg.data
        columns = read_table(d)
        y = labels(columns, d)
        self.split: Split = split_rows(len(y), self.cfg.split)
        raw = {c: columns[c] for c in [*d.dense, *d.categorical]}

        def take(idx: np.ndarray) -> dict[str, list[str]]:
            return {c: [v[i] for i in idx] for c, v in raw.items()}

        if version_dir is None:
            self.featurizer = CtrFeaturizer(d.dense, d.categorical, min_freq=d.min_freq).fit(take(self.split.train))
        else:
            self.featurizer = CtrFeaturizer.load(version_dir / PREPROCESS_FILE)

        def arrays(idx: np.ndarray) -> Arrays:
            x = self.featurizer.transform_columns(take(idx), len(idx))
            return Arrays(x["dense"], x["sparse"], y[idx])

        self.data = {k: arrays(getattr(self.split, k)) for k in ("train", "validation", "test")}
        test_raw = take(self.split.test)  # raw test rows, for checking the published raw-input graph
        self.test_records = [{c: v[i] for c, v in test_raw.items()} for i in range(len(self.split.test))]
        self.data_file = data_file_record(d, len(y))
        self.inputs = [  # an all-categorical or all-numeric log has one input only
            *([TensorSpec(name="dense", dtype="FP32", shape=[-1, len(d.dense)])] if d.dense else []),
            *(
                [
                    TensorSpec(
                        name="sparse",
                        dtype="INT64",
                        shape=[-1, len(d.categorical)],  # ids < table rows per field
                        index_bounds=IndexBounds(high=self.featurizer.cardinalities),
                    )
                ]
                if d.categorical
                else []
            ),
        ]

    def baseline(self) -> dict[str, float]:
        from compress.ctr.train import logistic_baseline

        return logistic_baseline(
            self.data["train"], self.data["validation"], self.data["test"], self.featurizer.cardinalities
        )

    def train_fp32(self) -> Any:
        import torch

        from compress.ctr.model import DeepFM
        from compress.ctr.train import fit

        t = self.cfg.train
        torch.manual_seed(t.seed)
        model = DeepFM(self.featurizer.cardinalities, len(self.cfg.data.dense), t.embedding_dim, t.hidden, t.dropout)
        self.history = fit(model, self.data["train"], self.data["validation"], t, desc="train fp32")
        self.fp32 = model
        return model

    def torch_transforms(self) -> dict[str, Callable[[Any], tuple[Any, dict[str, Any]]]]:
        return {"pruned": self._pruned, "emb_int8": self._emb_int8}

    def _pruned(self, model: Any) -> tuple[Any, dict[str, Any]]:
        """Shrink MLP hidden layers, then fine-tune briefly to recover accuracy."""
        from compress.ctr.train import fit
        from compress.prune import prune_mlp

        p = self.cfg.prune
        m = copy.deepcopy(model)
        shapes = prune_mlp(m.mlp, p.keep_ratio)
        if p.finetune_epochs:
            fit(
                m,
                self.data["train"],
                self.data["validation"],
                self.cfg.train,
                epochs=p.finetune_epochs,
                lr=p.finetune_lr,
                desc="fine-tune pruned",
            )
        return m, {
            "pruned_hidden": [f"{a}->{b}" for a, b in shapes],
            "keep_ratio": p.keep_ratio,
            "finetune_epochs": p.finetune_epochs,
        }

    def qat_finetune(self, model: Any) -> dict[str, Any]:
        """The int8_qat fine-tune: the training loop (best validation AUC kept) for ``[qat].epochs`` on a seeded
        subsample of at most ``[qat].max_rows`` training rows."""
        from compress.ctr.train import Arrays, fit
        from compress.qat import subsample

        q, train = self.cfg.qat, self.data["train"]
        idx = subsample(len(train), q.max_rows, self.cfg.train.seed)
        rows = Arrays(train.dense[idx], train.sparse[idx], train.y[idx])
        hist = fit(model, rows, self.data["validation"], self.cfg.train, epochs=q.epochs, lr=q.lr, desc="QAT fine-tune")
        return {"train_rows": len(idx), "best_val_auc": hist["best_val_auc"]}

    def _emb_int8(self, model: Any) -> tuple[Any, dict[str, Any]]:
        from compress.embedding_int8 import RowwiseInt8Embedding

        if model.embedding is None:
            raise ConfigError("candidate step emb_int8 needs categorical columns; [data].categorical is empty")
        m = copy.deepcopy(model)
        m.embedding = RowwiseInt8Embedding(m.embedding.weight)
        return m, {"embedding": "row-wise int8, fp16 scale per row (symmetric)"}

    def eval_feeds(self, split: str) -> dict[str, np.ndarray]:
        return self.data[split].feeds()

    def metrics(self, outputs: np.ndarray, split: str) -> dict[str, float]:
        return binary_metrics(outputs, self.data[split].y)

    def calibration(self) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
        """The first ``calibration_rows`` training rows in batches: bounded memory, deterministic."""
        q, train = self.cfg.quantize, self.data["train"]
        n = min(q.calibration_rows, len(train))

        def batches() -> Iterator[dict[str, np.ndarray]]:
            for i in range(0, n, q.calibration_batch):
                j = min(i + q.calibration_batch, n)
                yield {k: v[i:j] for k, v in train.feeds().items()}

        return batches

    def write_aux(self, version_dir: Path, model_path: Path) -> dict[str, str]:
        """``model_raw.onnx`` (role ``raw_model``): featurization inside the graph, checked on every test row."""
        from compress.ctr.feature_graph import write_raw_model

        if not (self.cfg.data.dense and self.cfg.data.categorical):  # the raw graph feeds both model inputs
            return {}
        return write_raw_model(self.featurizer, model_path, version_dir, check_records=self.test_records)

    def drift_reference(self, model_path: Path) -> DriftReference:
        """Raw test rows per field, and the version's own ``pctr`` on them (also observed on v2 answers)."""
        from app.rollout.bins import categorical_feature, numeric_feature
        from compress.evaluate import predict, session

        d, recs = self.cfg.data, self.test_records
        pctr = predict(session(model_path, threads=2), self.data["test"].feeds(), "pctr").reshape(-1)
        return DriftReference(
            rows=len(recs),
            features=[
                *(numeric_feature(c, [r[c] for r in recs], "input") for c in d.dense),
                *(categorical_feature(c, [r[c] for r in recs], "input") for c in d.categorical),
                numeric_feature("pctr", pctr.tolist(), "output", tensor="pctr"),
            ],
        )

    def robustness_set(self, r: RobustnessSection) -> RobustnessSet:
        """Sampled raw test rows with one categorical field missing or unseen, or every number jittered by 5 %;
        a flip: the row's pCTR order against a fixed other test row (which of the two ads ranks first) changed."""
        from compress.ctr.train import Arrays
        from compress.robustness.perturb import partners, perturb_columns, sample

        d = self.cfg.data
        idx = sample(len(self.test_records), r.rows, r.seed)
        clean = {c: [self.test_records[i][c] for i in idx] for c in [*d.dense, *d.categorical]}
        pert, kinds, src = perturb_columns(clean, d.dense, d.categorical, r.seed)

        def feeds(cols: dict[str, list[str]], n: int) -> dict[str, np.ndarray]:
            x = self.featurizer.transform_columns(cols, n)
            return Arrays(x["dense"], x["sparse"], np.zeros(n, np.float32)).feeds()

        return RobustnessSet(
            feeds(clean, len(idx)),
            feeds(pert, len(kinds)),
            src,
            kinds,
            "pair_order",
            "pctr",
            partner=partners(len(idx), r.seed),
            definition="the perturbed ad's pCTR order against another test ad (clean) changed",
        )

    def write_preprocessing(self, version_dir: Path) -> dict[str, str]:
        self.featurizer.save(version_dir / PREPROCESS_FILE)
        return {"kind": KIND, "path": PREPROCESS_FILE, "code_version": CODE_VERSION}

    def lineage(self) -> dict[str, Any]:
        return {
            "data_files": [self.data_file],
            "split": self.split.describe(self.cfg.split),
            "training": getattr(self, "history", {}),
        }
