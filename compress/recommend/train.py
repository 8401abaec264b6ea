"""Training the two-tower model: full softmax over the catalogue, multi-item targets, recency-weighted rows."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from compress.progress import Heartbeat
from compress.recommend.config import RecConfig, recency_tau
from compress.recommend.data import Examples
from compress.recommend.metrics import ranking_metrics
from compress.recommend.model import NEG, TwoTower

log = logging.getLogger("compress")


def _multi_hot(targets: list[np.ndarray], n: int) -> torch.Tensor:
    y = torch.zeros(len(targets), n)
    for i, t in enumerate(targets):
        y[i, torch.from_numpy(t)] = 1.0 / len(t)
    return y


def evaluate(model: TwoTower, ex: Examples, k: int = 50, exclude_seen: bool = False) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        s = model.scores(torch.from_numpy(ex.history))
        if exclude_seen:
            s = s.scatter(1, torch.from_numpy(ex.seen_matrix()), NEG)
        top = torch.topk(s, k, dim=1).indices.numpy()
    return ranking_metrics(top, ex.targets, s.shape[1] - 1)


def fit(
    cfg: RecConfig, n_items: int, train: Examples, val: Examples | None, epochs: int
) -> tuple[TwoTower, dict[str, Any]]:
    """Adam for ``epochs`` (early-stopped on validation recall@10 when ``val`` is given); the best state wins."""
    t = cfg.train
    exclude_seen = cfg.retrieval.exclude_seen
    torch.manual_seed(t.seed)
    model = TwoTower(n_items, t.dim, t.hidden, t.history_len, cfg.retrieval.top_k)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    hist = torch.from_numpy(train.history)
    tau = recency_tau(cfg)
    weight = torch.ones(len(train)) if tau is None else torch.from_numpy(np.exp(-train.age_days / tau)).float()
    gen = torch.Generator().manual_seed(t.seed)
    best, best_state, bad, history = -1.0, copy.deepcopy(model.state_dict()), 0, []
    beat = Heartbeat("train two-tower", epochs * -(-len(train) // t.batch_size))  # early stopping may end it sooner
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        total = 0.0
        for i in beat.each(range(0, len(order), t.batch_size)):
            idx = order[i : i + t.batch_size]
            y = _multi_hot([train.targets[j] for j in idx.tolist()], n_items)
            scores = model.scores(hist[idx])
            if exclude_seen:  # what serving excludes does not compete in the softmax either (targets stay)
                seen = torch.zeros_like(scores, dtype=torch.bool).scatter(1, hist[idx], True) & (y == 0)
                scores = scores.masked_fill(seen, NEG)
            logp = F.log_softmax(scores, dim=1)
            loss = (-(y * logp).sum(1) * weight[idx]).sum() / weight[idx].sum()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += float(loss.detach()) * len(idx)
        row: dict[str, Any] = {"epoch": epoch + 1, "loss": round(total / len(train), 4)}
        if val is not None:
            score = evaluate(model, val, exclude_seen=exclude_seen)["recall@10"]
            row["val_recall@10"] = round(score, 4)
            if score > best:
                best, best_state, bad = score, copy.deepcopy(model.state_dict()), 0
            else:
                bad += 1
        history.append(row)
        log.info("rec epoch %s", row)
        if val is not None and bad >= t.patience:
            break
    if val is not None:
        model.load_state_dict(best_state)
    model.eval()
    best_epoch = max(history, key=lambda r: r.get("val_recall@10", 0.0))["epoch"] if val is not None else epochs
    return model, {"epochs": history, "best_epoch": best_epoch, "train_rows": len(train)}
