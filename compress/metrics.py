"""Task metrics computed with numpy only, so ``compress evaluate`` needs no training stack."""

from __future__ import annotations

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum statistic, with ties given their average rank."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both classes among the labels")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average rank within ties, 1-based
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64).ravel()
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def binary_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"auc": roc_auc(probs, labels), "logloss": logloss(probs, labels)}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def macro_f1(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the ``n_classes`` classes (a class never predicted nor present counts 0)."""
    f1 = []
    for c in range(n_classes):
        tp = float(np.sum((pred == c) & (labels == c)))
        denom = float(np.sum(pred == c) + np.sum(labels == c))
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def intent_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Intent accuracy and macro-F1 on in-scope rows (label >= 0), out-of-scope AUROC (label -1 = positive).

    The out-of-scope score is ``1 - max softmax probability``: what the service thresholds to hand off.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    inside = labels >= 0
    pred = logits.argmax(axis=-1)
    oos = 1.0 - softmax(logits).max(axis=-1)
    return {
        "accuracy": float(np.mean(pred[inside] == labels[inside])),
        "macro_f1": macro_f1(pred[inside], labels[inside], logits.shape[-1]),
        "oos_auroc": roc_auc(oos, ~inside),
        # out-of-scope messages handed off when the threshold lets 95 % of in-scope messages through
        "oos_recall_at_95": float(np.mean(oos[~inside] > np.quantile(oos[inside], 0.95))),
    }
