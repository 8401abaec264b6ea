"""Training-set augmentation for the chatbot: perturbed copies of the training utterances, same intents.

Bitext's utterances are well-formed template sentences; customers type short, unpunctuated, misspelt messages.
Copies of the training utterances with those perturbations (``compress/robustness/perturb.py``'s typo and
drop-word, plus ``plain``: punctuation stripped and lowercased) teach the teacher's head and the student that
such messages mean the same intent. Only training rows are copied: validation (threshold, student search) and
test rows stay as the data set has them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from compress.robustness.perturb import case_punct, drop_word, typo

AUGMENT_KINDS = ("plain", "typo", "drop_word", "case_punct")
_NOT_WORD = re.compile(r"[^\w\s'#$%-]+")


def plain(text: str, rng: np.random.Generator) -> str:
    """Lowercase with the punctuation removed (``#``, ``$``, ``%``, ``'`` and ``-`` kept: they belong to words)."""
    del rng
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


_KINDS: dict[str, Callable[[str, np.random.Generator], str]] = {
    "plain": plain,
    "typo": typo,
    "drop_word": drop_word,
    "case_punct": case_punct,
}


def augment(
    texts: Sequence[str], labels: np.ndarray, kinds: Sequence[str], share: float, seed: int
) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """``texts`` plus, per kind, a perturbed copy of a seeded ``share`` of them (copies equal to their source,
    or to a text already present, are dropped). Returns (texts, labels, copies added per kind)."""
    out, out_labels = list(texts), [int(x) for x in labels]
    seen = {t.lower() for t in out}
    added: dict[str, int] = {}
    n = len(texts)
    for k, kind in enumerate(kinds):
        rng = np.random.default_rng([seed, k, sum(map(ord, kind))])
        rows = np.sort(rng.choice(n, int(round(share * n)), replace=False)) if n else np.zeros(0, np.int64)
        added[kind] = 0
        for i in rows:
            new = _KINDS[kind](texts[int(i)], rng)
            if new.strip() and new.lower() not in seen:
                seen.add(new.lower())
                out.append(new)
                out_labels.append(int(labels[int(i)]))
                added[kind] += 1
    return out, np.asarray(out_labels, dtype=np.int64), added
