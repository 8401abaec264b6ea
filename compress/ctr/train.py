"""Training loop for the CTR network (early stopping on validation AUC) and the logistic-regression baseline."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from compress.config import TrainSection
from compress.ctr.prior import blank_rows
from compress.metrics import binary_metrics
from compress.progress import Heartbeat, progress


@dataclass
class Arrays:
    """Model inputs and labels of one split."""

    dense: np.ndarray
    sparse: np.ndarray
    y: np.ndarray

    def feeds(self) -> dict[str, np.ndarray]:
        """Model inputs; a part without columns (all-categorical or all-numeric log) is no input."""
        return {k: v for k, v in (("dense", self.dense), ("sparse", self.sparse)) if v.shape[1]}

    def __len__(self) -> int:
        return len(self.y)


def predict(model: nn.Module, data: Arrays, batch: int = 4096) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(data), batch):
            d = torch.from_numpy(data.dense[i : i + batch])
            s = torch.from_numpy(data.sparse[i : i + batch])
            out.append(torch.sigmoid(model.logit(d, s)).numpy().reshape(-1))  # type: ignore[operator]
    return np.concatenate(out)


def fit(
    model: nn.Module,
    train: Arrays,
    val: Arrays,
    cfg: TrainSection,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    desc: str = "train",
) -> dict[str, object]:
    """Adam + BCE on logits (embeddings get their own, stronger L2); keeps the weights of the best validation-AUC epoch. Returns the history."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    emb = [p for n, p in model.named_parameters() if n.startswith("embedding.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("embedding.")]
    opt = torch.optim.Adam(
        [
            {"params": emb, "weight_decay": cfg.embedding_weight_decay},
            {"params": rest, "weight_decay": cfg.weight_decay},
        ],
        lr=lr or cfg.lr,
    )
    loss_fn = nn.BCEWithLogitsLoss()
    logit: Any = cast(Any, model).logit  # DeepFM / LR: pre-sigmoid scores (nn.Module types attributes loosely)
    dense, sparse, y = (torch.from_numpy(a) for a in (train.dense, train.sparse, train.y))
    best_auc, best_state, history, stale = -1.0, copy.deepcopy(model.state_dict()), [], 0
    n_epochs = epochs or cfg.epochs
    beat = Heartbeat(desc, n_epochs * -(-len(y) // cfg.batch_size))  # early stopping may end it sooner
    for epoch in progress(range(n_epochs), desc=desc):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for i in beat.each(range(0, len(y), cfg.batch_size)):
            b = order[i : i + cfg.batch_size]
            opt.zero_grad()
            d_b, s_b = blank_rows(dense[b], sparse[b], cfg.blank_rows, gen)
            loss = loss_fn(logit(d_b, s_b).squeeze(1), y[b])
            loss.backward()
            opt.step()
        m = binary_metrics(predict(model, val), val.y)
        history.append({"epoch": epoch, **m})
        if m["auc"] > best_auc:
            best_auc, best_state, stale = m["auc"], copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return {"best_val_auc": best_auc, "epochs": history}


def logistic_baseline(train: Arrays, val: Arrays, test: Arrays, cardinalities: list[int]) -> dict[str, float]:
    """One-hot categorical ids + dense features, L2 strength picked on validation AUC; test metrics."""
    from scipy import sparse as sp
    from sklearn.linear_model import LogisticRegression

    offsets = np.concatenate([[0], np.cumsum(cardinalities)[:-1]])

    def design(a: Arrays) -> sp.csr_matrix:
        n, c = a.sparse.shape
        onehot = sp.csr_matrix(
            (np.ones(n * c, dtype=np.float32), (np.repeat(np.arange(n), c), (a.sparse + offsets).ravel())),
            shape=(n, int(sum(cardinalities))),
        )
        return sp.hstack([sp.csr_matrix(a.dense), onehot]).tocsr()

    xtr, xva, xte = design(train), design(val), design(test)
    best = None
    for c in (0.01, 0.03, 0.1, 0.3, 1.0):
        clf = LogisticRegression(C=c, max_iter=2000).fit(xtr, train.y)
        auc = binary_metrics(clf.predict_proba(xva)[:, 1], val.y)["auc"]
        if best is None or auc > best[0]:
            best = (auc, c, clf)
    assert best is not None
    metrics = binary_metrics(best[2].predict_proba(xte)[:, 1].astype(np.float32), test.y)
    return {**metrics, "C": best[1]}
