"""CPU training for the chatbot: frozen-teacher embeddings, the intent head, the distilled student, TF-IDF baseline.

Everything is seeded and runs on a fixed number of torch threads, so a rerun reproduces the same numbers.
Denormal floats are flushed to zero during training: tiny gradients otherwise slow CPU math down ~4x.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from app.tasks.text import pad_batch
from compress.chat.config import DistillSection
from compress.metrics import intent_metrics
from compress.progress import Heartbeat, progress


def fit_head(model: nn.Module, emb: np.ndarray, labels: np.ndarray, c: float) -> None:
    """Multinomial logistic regression (L-BFGS, L2 with inverse strength ``c``) on frozen embeddings -> model.head."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=c, max_iter=3000).fit(emb, labels)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(lr.coef_).float())  # type: ignore[union-attr, operator]
        model.head.bias.copy_(torch.from_numpy(lr.intercept_).float())  # type: ignore[union-attr, operator]


def student_tokens(seqs: Sequence[Sequence[int]], specials: Sequence[int] = (0, 100, 101, 102, 103)) -> torch.Tensor:
    """Sorted token ids the student keeps: those seen in the training split plus the special tokens."""
    return torch.tensor(sorted({t for s in seqs for t in s} | set(specials)), dtype=torch.int64)


def _shuffled_buckets(lengths: np.ndarray, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random batches of similar length: shuffle, sort within windows of 20 batches, shuffle the batches."""
    perm = rng.permutation(len(lengths))
    out: list[np.ndarray] = []
    window = batch * 20
    for i in range(0, len(perm), window):
        chunk = perm[i : i + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out.extend(chunk[j : j + batch] for j in range(0, len(chunk), batch))
    return [out[k] for k in rng.permutation(len(out))]


def distill(
    student: nn.Module,
    seqs: Sequence[Sequence[int]],
    teacher_emb: np.ndarray,
    teacher_logits: np.ndarray,
    cfg: DistillSection,
    seed: int,
    desc: str = "distil student",
    one_cycle: bool = True,
) -> dict[str, Any]:
    """Train ``student`` to match the teacher: ``w_e * (1 - cos(emb)) + w_l * T^2 * KL(teacher_T || student_T)``.

    ``one_cycle`` = warm up to ``cfg.lr`` and anneal (training from the teacher's layers); else a constant
    ``cfg.lr`` (a short fine-tune of an already trained model, e.g. QAT, where a few steps leave no room for it).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lengths = np.array([len(s) for s in seqs])
    t_emb = torch.from_numpy(teacher_emb)
    t_logp = torch.log_softmax(torch.from_numpy(teacher_logits) / cfg.temperature, -1)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.01)
    steps = cfg.epochs * (-(-len(seqs) // cfg.batch_size))
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1), pct_start=0.1)
        if one_cycle
        else None
    )
    history: list[float] = []
    beat = Heartbeat(desc, steps)
    for _ in progress(range(cfg.epochs), desc=desc):
        student.train()
        total = 0.0
        batches = _shuffled_buckets(lengths, cfg.batch_size, rng)
        for idx in beat.each(batches):
            ids, mask = pad_batch([seqs[i] for i in idx])
            logits, emb = student(torch.from_numpy(ids), torch.from_numpy(mask))
            loss_e = (1.0 - (emb * t_emb[idx]).sum(-1)).mean()
            loss_l = (
                nn.functional.kl_div(
                    torch.log_softmax(logits / cfg.temperature, -1), t_logp[idx], reduction="batchmean", log_target=True
                )
                * cfg.temperature**2
            )
            loss = cfg.embedding_weight * loss_e + cfg.logit_weight * loss_l
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(idx)
        history.append(round(total / len(seqs), 5))
    student.eval()
    return {"epochs": cfg.epochs, "loss": history, "train_rows": len(seqs)}


def tfidf_baseline(
    train: list[str], y: np.ndarray, test: list[str], test_labels: np.ndarray, c: float = 10.0
) -> dict[str, float]:
    """TF-IDF + logistic regression on the same split: word 1-2 grams (the classic) and char 2-5 grams."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    out: dict[str, float] = {}
    for prefix, vec in (
        ("", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
        ("char_", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
    ):
        x = vec.fit_transform(train)
        lr = LogisticRegression(C=c, max_iter=3000).fit(x, y)
        m = intent_metrics(lr.decision_function(vec.transform(test)), test_labels)
        out.update({f"{prefix}{k}": v for k, v in m.items()})
    return out
