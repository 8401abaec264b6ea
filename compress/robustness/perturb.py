"""Seeded, deterministic perturbations of test rows: text, CTR raw fields, recommendation histories.

Each function takes the clean rows and a seed and returns new rows; the same seed gives the same output, so
every candidate (and every rerun) sees identical perturbed inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TEXT_KINDS = ("typo", "case_punct", "drop_word")
CTR_KINDS = ("cat_missing", "cat_unseen", "dense_jitter")
UNSEEN = "__unseen_value__"
_PUNCT = ".?!,"


def _rng(seed: int, kind: str) -> np.random.Generator:
    return np.random.default_rng([seed, sum(map(ord, kind))])


def sample(n: int, rows: int, seed: int) -> np.ndarray:
    """Indices (sorted) of a seeded sample of ``rows`` of ``n`` test rows; all of them when there are fewer."""
    if n <= rows:
        return np.arange(n, dtype=np.int64)
    return np.sort(_rng(seed, "sample").choice(n, size=rows, replace=False)).astype(np.int64)


def partners(n: int, seed: int) -> np.ndarray:
    """For each of ``n`` rows, another row (never itself when ``n > 1``): the ad it is ranked against."""
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    shift = _rng(seed, "partners").integers(1, n, n)
    return ((np.arange(n) + shift) % n).astype(np.int64)


def typo(text: str, rng: np.random.Generator) -> str:
    """One character-level typo in a word of 3+ letters: swap two neighbours, drop, double or replace one."""
    words = text.split(" ")
    cands = [i for i, w in enumerate(words) if len(w) >= 3 and any(c.isalpha() for c in w)]
    if not cands:
        return text + text[-1:] if text else text
    i = int(rng.choice(cands))
    w = words[i]
    j = int(rng.integers(0, len(w) - 1))
    op = int(rng.integers(0, 4))
    if op == 0:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    elif op == 1:
        w = w[:j] + w[j + 1 :]
    elif op == 2:
        w = w[:j] + w[j] + w[j:]
    else:
        w = w[:j] + "abcdefghijklmnopqrstuvwxyz"[int(rng.integers(0, 26))] + w[j + 1 :]
    words[i] = w
    return " ".join(words)


def case_punct(text: str, rng: np.random.Generator) -> str:
    """Other casing (all lower, all upper or capitalised) and trailing punctuation added or removed."""
    case = int(rng.integers(0, 3))
    out = text.lower() if case == 0 else text.upper() if case == 1 else text[:1].upper() + text[1:].lower()
    stripped = out.rstrip(_PUNCT + " ")
    return stripped if stripped != out else out + str(rng.choice(list("?.!")))


def drop_word(text: str, rng: np.random.Generator) -> str:
    """One word removed (a one-word message loses its last character instead, so it still changes)."""
    words = text.split()
    if len(words) < 2:
        return text[:-1] if len(text) > 1 else text
    del words[int(rng.integers(0, len(words)))]
    return " ".join(words)


def perturb_texts(texts: Sequence[str], seed: int) -> tuple[list[str], list[str], np.ndarray]:
    """Every text once per kind: ``(perturbed texts, kind of each, index of its clean text)``."""
    out: list[str] = []
    kinds: list[str] = []
    src: list[int] = []
    fns = {"typo": typo, "case_punct": case_punct, "drop_word": drop_word}
    for kind in TEXT_KINDS:
        rng = _rng(seed, kind)
        for i, t in enumerate(texts):
            out.append(fns[kind](t, rng))
            kinds.append(kind)
            src.append(i)
    return out, kinds, np.asarray(src, dtype=np.int64)


def perturb_columns(
    columns: dict[str, list[str]], dense: Sequence[str], categorical: Sequence[str], seed: int, jitter: float = 0.05
) -> tuple[dict[str, list[str]], list[str], np.ndarray]:
    """Raw CTR rows, once per kind: one categorical field (random per row) set to missing (``""``) or to a value
    never seen in training, or every numeric field multiplied by ``1 + jitter * N(0, 1)``. Returns the perturbed
    columns (rows of all kinds stacked), the kind of each row and the index of its clean row."""
    n = len(next(iter(columns.values()))) if columns else 0
    out: dict[str, list[str]] = {c: [] for c in columns}
    kinds: list[str] = []
    for kind in CTR_KINDS:
        if kind != "dense_jitter" and not categorical or kind == "dense_jitter" and not dense:
            continue
        rng = _rng(seed, kind)
        block = {c: list(v) for c, v in columns.items()}
        if kind == "dense_jitter":
            for c in dense:
                noise = 1.0 + jitter * rng.standard_normal(n)
                block[c] = [_jitter(v, f) for v, f in zip(block[c], noise, strict=True)]
        else:
            fields = rng.integers(0, len(categorical), n)
            for i, f in enumerate(fields):
                block[categorical[int(f)]][i] = "" if kind == "cat_missing" else UNSEEN
        for c in out:
            out[c].extend(block[c])
        kinds.extend([kind] * n)
    reps = len(kinds) // n if n else 0
    return out, kinds, np.tile(np.arange(n, dtype=np.int64), reps)


def _jitter(value: str, factor: float) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return value  # missing or not a number: nothing to jitter
    return repr(x * float(factor))


def drop_history_item(histories: np.ndarray, pad: int, seed: int) -> np.ndarray:
    """Each history with one of its (non-padding) items removed, the rest shifted left and padded with ``pad``;
    a history of one item keeps it (nothing would remain to recommend from)."""
    rng = _rng(seed, "drop_history_item")
    out = np.full_like(histories, pad)
    for r, h in enumerate(histories):
        items = [int(x) for x in h if x != pad]
        if len(items) > 1:
            del items[int(rng.integers(0, len(items)))]
        out[r, : len(items)] = items
    return out
