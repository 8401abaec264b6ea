"""The perturbation set of an imported model, so the robustness gate covers imports too.

With feature vocabularies (a ``ctr`` import) the held-out rows are raw log fields: they are perturbed like the
project's own CTR task (``compress.robustness.perturb.perturb_columns``: one categorical field missing or set to a
value never seen, every number jittered by 5 %) and featurized by the vocabulary, as ``/v1/ads/ctr`` would. Without
a vocabulary only the model's tensors are known: floating-point inputs are jittered element-wise by 5 %, except
columns whose held-out values are all whole numbers (ids or codes stored as floats, where a fraction means
nothing); integer inputs are left as they are. A model with nothing to jitter records the reason instead.

The decision is read from the evaluated output: one score per row -> the row's order against a fixed other
held-out row (``pair_order``, as for CTR); several scores per row -> the top class (``argmax``).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from app.manifest import TensorSpec
from app.tasks.ctr.vocab import VocabFeaturizer
from compress.config import RobustnessSection
from compress.imported.data import Rows
from compress.robustness.flips import Decision, RobustnessSet
from compress.robustness.perturb import partners, perturb_columns, sample

JITTER: Final = 0.05
FLOAT_DTYPES: Final = ("FP32", "FP16", "FP64")
DEFINITIONS: Final[dict[str, str]] = {
    "pair_order": "the perturbed row's score order against another held-out row (clean) changed",
    "argmax": "the top class (argmax of the output) changed",
}


def robustness_set(
    held: Rows,
    inputs: list[TensorSpec],
    output: TensorSpec,
    r: RobustnessSection,
    vocab: VocabFeaturizer | None = None,
    classes: bool = False,
) -> RobustnessSet | str:
    """The set for an imported model's held-out rows, or the reason there is none.

    ``classes``: the metric reads class scores (accuracy), which decides an output whose width is variable.
    """
    decision = _decision(output, classes)
    if isinstance(decision, tuple):
        return decision[0]
    n = len(held.labels)
    if n < 2:
        return "fewer than 2 held-out rows"
    idx = sample(n, r.rows, r.seed)
    if vocab is not None:
        got = _raw_fields(held, vocab, idx, r.seed)
    else:
        got = _tensors(held, inputs, idx, r.seed)
    if isinstance(got, str):
        return got
    clean, pert, kinds, src = got
    return RobustnessSet(
        clean,
        pert,
        src,
        kinds,
        decision,
        output.name,
        partner=partners(len(idx), r.seed) if decision == "pair_order" else None,
        definition=DEFINITIONS[decision],
    )


Perturbed = tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str], np.ndarray]


def _decision(output: TensorSpec, classes: bool) -> Decision | tuple[str]:
    """``pair_order`` for one score per row, ``argmax`` for a fixed number of scores; else (reason,).

    A variable width (exporters often write ``[-1, -1]`` for ``[batch, 1]``) is read as the metric reads it: the
    score metrics take one score per row, ``accuracy`` takes the top class.
    """
    width = output.shape[1:]
    if len(width) == 0 or (len(width) == 1 and width[0] == 1):
        return "pair_order"
    if len(width) == 1 and width[0] > 1:
        return "argmax"
    if len(width) == 1 and width[0] < 1:
        return "argmax" if classes else "pair_order"
    return (
        f"output {output.name!r} has shape {output.shape}: compress reads a decision from one score per row "
        "(order) or a fixed number of class scores (top class)",
    )


def _raw_fields(held: Rows, vocab: VocabFeaturizer, idx: np.ndarray, seed: int) -> Perturbed | str:
    """Raw records perturbed per field kind, then featurized by the vocabulary (the served path's input)."""
    if held.records is None:
        return "the held-out rows carry no raw records"
    dense, cat = vocab.dense_columns, vocab.categorical_columns
    recs = [held.records[int(i)] for i in idx]
    columns: dict[str, list[Any]] = {c: [rec.get(c) for rec in recs] for c in [*dense, *cat]}
    pert, kinds, src = perturb_columns(columns, dense, cat, seed, JITTER)
    if not kinds:
        return "the vocabulary names no raw fields"
    rows = [{c: pert[c][p] for c in pert} for p in range(len(kinds))]
    return vocab.transform_records(recs), vocab.transform_records(rows), kinds, src


def _tensors(held: Rows, inputs: list[TensorSpec], idx: np.ndarray, seed: int) -> Perturbed | str:
    """Floating-point inputs jittered element-wise (whole-number columns kept); integer inputs as they are."""
    rng = np.random.default_rng([seed, sum(map(ord, "dense_jitter"))])
    clean = {k: np.asarray(v)[idx] for k, v in held.feeds.items()}
    pert: dict[str, np.ndarray] = {}
    jittered = 0
    for spec in inputs:
        x = clean[spec.name]
        if spec.dtype not in FLOAT_DTYPES or x.ndim < 2:
            pert[spec.name] = x
            continue
        whole = np.all(np.asarray(held.feeds[spec.name]) == np.round(held.feeds[spec.name]), axis=0)
        noise = 1.0 + JITTER * rng.standard_normal(x.shape)
        pert[spec.name] = np.where(whole, x, x * noise).astype(x.dtype)
        jittered += int((~whole).sum())
    if not jittered:
        return (
            "no input to perturb without a vocabulary: the inputs are integer ids or whole numbers "
            "(import with --vocab to perturb the raw fields)"
        )
    return clean, pert, ["dense_jitter"] * len(idx), np.arange(len(idx), dtype=np.int64)
