"""The metrics an imported model can be gated on: one registry, each with its direction and label checks.

A metric reads the evaluated output as the importing library wrote it: ``[N]`` or ``[N, 1]`` scores, or
``[N, C]`` class probabilities (a binary metric takes column 1, the positive class; accuracy takes the argmax).
Every refusal names the label or output and what was expected, so a wrong ``--metric`` fails in one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from compress.config import GateRule
from compress.errors import ConfigError, DataError
from compress.metrics import logloss, roc_auc

MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray | None], float]


@dataclass(frozen=True)
class Metric:
    """``higher_is_better`` sets the gate's direction; ``rule`` is the default gate rule versus FP32."""

    name: str
    higher_is_better: bool
    fn: MetricFn
    rule_kind: str
    rule_value: float

    def __call__(self, out: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None) -> float:
        return self.fn(np.asarray(out, dtype=np.float64), np.asarray(labels), groups)

    def default_rule(self) -> GateRule:
        return GateRule(metric=self.name, kind=self.rule_kind, value=self.rule_value)  # type: ignore[arg-type]


def _binary_labels(labels: np.ndarray, metric: str) -> np.ndarray:
    values = np.unique(labels)
    if not np.isin(values, [0, 1]).all():
        shown = ", ".join(str(v) for v in values[:8]) + (" ..." if len(values) > 8 else "")
        raise DataError(f"{metric} needs a binary 0/1 label; the label has values {shown}")
    if len(values) < 2:
        raise DataError(f"{metric} needs both classes among the held-out labels; only {values.tolist()} present")
    return labels.astype(np.int64)


def _positive_scores(out: np.ndarray, metric: str) -> np.ndarray:
    if out.ndim == 1:
        return out
    if out.ndim == 2 and out.shape[1] == 1:
        return out[:, 0]
    if out.ndim == 2 and out.shape[1] == 2:
        return out[:, 1]  # class probabilities: the positive class
    raise DataError(f"{metric} needs one score per row or two class probabilities; the output has shape {out.shape}")


def _auc(out: np.ndarray, labels: np.ndarray, groups: np.ndarray | None) -> float:
    return roc_auc(_positive_scores(out, "auc"), _binary_labels(labels, "auc"))


def _logloss(out: np.ndarray, labels: np.ndarray, groups: np.ndarray | None) -> float:
    p = _positive_scores(out, "logloss")
    if p.min() < 0 or p.max() > 1:
        raise DataError(
            f"logloss needs probabilities in [0, 1]; the output ranges over [{p.min():.4g}, {p.max():.4g}] "
            "(logits? evaluate the probability output with [model].output / --output)"
        )
    return logloss(p, _binary_labels(labels, "logloss"))


def _accuracy(out: np.ndarray, labels: np.ndarray, groups: np.ndarray | None) -> float:
    if out.ndim == 2 and out.shape[1] > 1:
        pred = out.argmax(axis=1)
    else:
        s = out.reshape(len(out))
        pred = s if np.all(s == np.round(s)) else (s >= 0.5)  # predicted labels, or a binary probability
    return float(np.mean(pred.astype(np.int64) == labels.astype(np.int64)))


def _regression(out: np.ndarray, labels: np.ndarray, metric: str) -> np.ndarray:
    if not (out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)):
        raise DataError(f"{metric} needs one value per row; the output has shape {out.shape}")
    if not np.issubdtype(labels.dtype, np.number):
        raise DataError(f"{metric} needs a numeric label; the label has dtype {labels.dtype}")
    return out.reshape(len(out)) - labels.astype(np.float64)


def _mse(out: np.ndarray, labels: np.ndarray, groups: np.ndarray | None) -> float:
    return float(np.mean(_regression(out, labels, "mse") ** 2))


def _mae(out: np.ndarray, labels: np.ndarray, groups: np.ndarray | None) -> float:
    return float(np.mean(np.abs(_regression(out, labels, "mae"))))


def _ndcg(k: int) -> MetricFn:
    def ndcg(out: np.ndarray, labels: np.ndarray, groups: np.ndarray | None) -> float:
        if groups is None:
            raise DataError(f"ndcg@{k} ranks rows within a query: name the query column ([data].group / --group)")
        scores = _positive_scores(out, f"ndcg@{k}")
        gains = labels.astype(np.float64)
        if gains.min() < 0:
            raise DataError(f"ndcg@{k} needs non-negative relevance labels; the smallest is {gains.min():g}")
        discount = 1.0 / np.log2(np.arange(2, k + 2))
        per_query = []
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            ideal = np.sort(gains[idx])[::-1][:k]
            if ideal.sum() <= 0:
                continue  # no relevant row: the query says nothing about the ranking
            ranked = gains[idx][np.argsort(-scores[idx], kind="stable")][:k]
            per_query.append(float((ranked * discount[: len(ranked)]).sum() / (ideal * discount[: len(ideal)]).sum()))
        if not per_query:
            raise DataError(f"ndcg@{k}: no query has a row with a positive relevance label")
        return float(np.mean(per_query))

    return ndcg


METRICS: dict[str, Metric] = {
    "auc": Metric("auc", True, _auc, "min_ratio", 0.999),
    "logloss": Metric("logloss", False, _logloss, "max_rel_increase", 0.005),
    "accuracy": Metric("accuracy", True, _accuracy, "max_abs_drop", 0.005),
    "mse": Metric("mse", False, _mse, "max_rel_increase", 0.01),
    "mae": Metric("mae", False, _mae, "max_rel_increase", 0.01),
}
NDCG = re.compile(r"^ndcg@([1-9][0-9]*)$")


def get_metric(name: str) -> Metric:
    """The registered metric ``name`` (``ndcg@K`` for any K >= 1); a ConfigError lists the known names."""
    m = NDCG.match(name)
    if m:
        k = int(m.group(1))
        return Metric(name, True, _ndcg(k), "min_ratio", 0.99)
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; known: {', '.join([*METRICS, 'ndcg@K'])}")
    return METRICS[name]
