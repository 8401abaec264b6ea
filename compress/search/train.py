"""CPU training for the ranker: listwise fine-tuning of the teacher, distillation of the student, and baselines.

Lists are whole queries: a step takes ``queries_per_step`` queries and all their judged products, and the loss
is the cross-entropy between the softmax of the model's scores over each list and a target distribution (the
graded gains for the teacher, the teacher's scores for the student). Seeded, fixed threads, reproducible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from app.tasks.search.text import CLS_ID, SEP_ID, pad_pairs
from app.tasks.text import length_buckets
from compress.progress import Heartbeat, progress


@dataclass
class Lists:
    """Pair token ids of several queries, row-grouped per query, with gains."""

    seqs: list[list[int]]
    groups: list[np.ndarray]
    gains: list[np.ndarray]


def score(model: nn.Module, seqs: Sequence[Sequence[int]], batch: int = 128) -> np.ndarray:
    """Scores [N] of every pair in length-bucketed batches, original order."""
    model.eval()
    out = np.zeros(len(seqs), np.float32)
    with torch.no_grad():
        for idx in length_buckets([len(s) for s in seqs], batch):
            ids, mask = pad_pairs([seqs[i] for i in idx])
            out[idx] = model(torch.from_numpy(ids), torch.from_numpy(mask)).reshape(-1).numpy()
    return out


def _listwise(scores: torch.Tensor, target: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor:
    """Mean over lists of the cross-entropy between a target distribution and softmax(scores) within the list."""
    losses = [-(target[g] * torch.log_softmax(scores[g], 0)).sum() for g in groups]
    return torch.stack(losses).mean()


def _steps(n_lists: int, per_step: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(n_lists)
    return [perm[i : i + per_step] for i in range(0, n_lists, per_step)]


def _batch(lists: Lists, picked: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, list[torch.Tensor]]:
    rows = np.concatenate([lists.groups[q] for q in picked])
    ids, mask = pad_pairs([lists.seqs[i] for i in rows])
    bounds = np.cumsum([0, *(len(lists.groups[q]) for q in picked)])
    groups = [torch.arange(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return torch.from_numpy(ids), torch.from_numpy(mask), rows, groups


def fine_tune(
    model: nn.Module,
    lists: Lists,
    *,
    epochs: int,
    lr: float,
    per_step: int,
    temperature: float,
    seed: int,
    head_lr: float | None = None,
) -> dict[str, Any]:
    """Listwise fine-tuning on graded labels: target = softmax(gain / temperature) within each query.

    Parameters named ``*head*`` (the fresh score head) train at ``head_lr``: at the encoder's small rate a
    freshly initialised head cannot grow to a useful score range in a few dozen steps, and the loss then bends
    the pretrained encoder instead.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    targets = [torch.softmax(torch.from_numpy(g).float() / temperature, 0) for g in lists.gains]
    head = [p for n, p in model.named_parameters() if "head" in n]
    body = [p for n, p in model.named_parameters() if "head" not in n]
    rates = [lr, head_lr or lr]
    opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": rates[1]}], weight_decay=0.01)
    total = epochs * len(_steps(len(lists.groups), per_step, rng))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=rates, total_steps=max(total, 1), pct_start=0.1)
    history = []
    beat = Heartbeat("fine-tune teacher", total)
    for _ in progress(range(epochs), desc="fine-tune teacher"):
        model.train()
        run = 0.0
        steps = _steps(len(lists.groups), per_step, rng)
        for picked in beat.each(steps):
            ids, mask, _, groups = _batch(lists, picked)
            target = torch.cat([targets[q] for q in picked])
            loss = _listwise(model(ids, mask).reshape(-1), target, groups)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            run += loss.item()
        history.append(round(run / len(steps), 5))
    model.eval()
    return {
        "loss": "listwise softmax cross-entropy, target softmax(gain / T)",
        "temperature": temperature,
        "epochs": epochs,
        "lr": lr,
        "head_lr": rates[1],
        "queries_per_step": per_step,
        "epoch_loss": history,
        "train_queries": len(lists.groups),
        "train_pairs": len(lists.seqs),
    }


def distill(
    student: nn.Module,
    lists: Lists,
    teacher_scores: np.ndarray,
    *,
    epochs: int,
    lr: float,
    per_step: int,
    temperature: float,
    score_weight: float,
    seed: int,
) -> dict[str, Any]:
    """Listwise KL to the teacher's softmax(score / T) per query, plus ``score_weight`` x MSE on raw scores."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t = torch.from_numpy(np.asarray(teacher_scores, np.float32))
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)
    total = epochs * len(_steps(len(lists.groups), per_step, rng))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1), pct_start=0.1)
    history = []
    beat = Heartbeat("distil student", total)
    for _ in progress(range(epochs), desc="distil student"):
        student.train()
        run = 0.0
        steps = _steps(len(lists.groups), per_step, rng)
        for picked in beat.each(steps):
            ids, mask, rows, groups = _batch(lists, picked)
            s, tr = student(ids, mask).reshape(-1), t[torch.from_numpy(rows)]
            target = torch.cat([torch.softmax(tr[g] / temperature, 0) for g in groups])
            loss = _listwise(s / temperature, target, groups) + score_weight * nn.functional.mse_loss(s, tr)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            run += loss.item()
        history.append(round(run / max(len(steps), 1), 5))
    student.eval()
    return {
        "loss": f"listwise KL to teacher softmax(score / {temperature}) + {score_weight} x MSE(score)",
        "epochs": epochs,
        "lr": lr,
        "epoch_loss": history,
        "train_pairs": len(lists.seqs),
    }


# ---- baselines ----
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def bm25_scores(
    corpus: dict[str, str], queries: Sequence[str], candidates: Sequence[Sequence[str]]
) -> list[np.ndarray]:
    """BM25 (Okapi, ``rank-bm25`` defaults k1=1.5, b=0.75) of each query's candidates; IDF over the whole catalogue."""
    from rank_bm25 import BM25Okapi  # type: ignore[import-untyped]

    ids = list(corpus)
    pos = {p: i for i, p in enumerate(ids)}
    bm = BM25Okapi([words(corpus[p]) for p in ids])
    return [
        np.asarray(bm.get_batch_scores(words(q), [pos[p] for p in c]), np.float64)
        for q, c in zip(queries, candidates, strict=True)
    ]


def single_seqs(tokens: Sequence[Sequence[int]], max_tokens: int) -> list[list[int]]:
    """``[CLS] tokens [SEP]`` within ``max_tokens`` (a bi-encoder's single-text input)."""
    return [[CLS_ID, *t[: max_tokens - 2], SEP_ID] for t in tokens]


def embed(encoder: nn.Module, seqs: Sequence[Sequence[int]]) -> np.ndarray:
    """Unit-norm mean-pooled MiniLM embeddings (``Encoder.embed``)."""
    from compress.minilm.run import run_model

    return run_model(encoder, seqs)[1]
