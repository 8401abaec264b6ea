"""Choosing the student's depth and epochs on validation, within a time bound.

A three-layer student distilled for three epochs matches the teacher on a couple of dozen intents, but falls
short with many (150 intents: 0.941 against a gate limit of 0.946). Rather than a fixed recipe, the trials run
cheapest first (layers x epochs) and the first student whose validation accuracy reaches ``target_ratio`` of
the teacher's is kept; otherwise the best one seen. Validation rows are never the gate's test rows, so the
choice does not leak into the gated numbers. A trial is skipped when its estimated time would exceed the bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from compress.chat.config import DistillSection

S = TypeVar("S")


@dataclass(frozen=True)
class Trial:
    """One student recipe and what it measured on validation."""

    layers: tuple[int, ...]
    epochs: int
    val_accuracy: float = float("nan")
    seconds: float = 0.0

    @property
    def cost(self) -> int:
        return len(self.layers) * max(self.epochs, 1)

    def record(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "epochs": self.epochs,
            "val_accuracy": round(self.val_accuracy, 5),
            "seconds": round(self.seconds, 1),
        }


def recipes(cfg: DistillSection) -> list[Trial]:
    """``layers`` x ``epochs`` first, then every other combination of the search options, cheapest first."""
    first = Trial(tuple(cfg.layers), cfg.epochs)
    layer_sets = list(dict.fromkeys([tuple(cfg.layers), *(tuple(x) for x in cfg.search_layers)]))
    epochs = list(dict.fromkeys([cfg.epochs, *cfg.search_epochs]))
    rest = {Trial(ls, e) for ls in layer_sets for e in epochs} - {first}
    return [first, *sorted(rest, key=lambda t: (t.cost, len(t.layers), t.layers, t.epochs))]


def search_student(
    train: Callable[[list[int], int], tuple[S, float]],
    cfg: DistillSection,
    teacher_val_accuracy: float,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[S, dict[str, Any]]:
    """Run ``train(layers, epochs) -> (student, validation accuracy)`` over :func:`recipes` until one is good enough.

    Returns the chosen student and a record of the search (every trial, the target, why it stopped).
    """
    target = cfg.target_ratio * teacher_val_accuracy
    start = clock()
    done: list[Trial] = []
    best: tuple[S, Trial] | None = None
    stopped = "no recipe left"
    per_cost = 0.0  # seconds per (layer x epoch), from the trials so far
    for recipe in recipes(cfg):
        elapsed = clock() - start
        if done and elapsed + per_cost * recipe.cost > cfg.max_search_s:
            stopped = f"time bound: the next trial ({recipe.cost * per_cost:.0f} s estimated) would pass max_search_s"
            break
        t0 = clock()
        student, acc = train(list(recipe.layers), recipe.epochs)
        trial = Trial(recipe.layers, recipe.epochs, acc, clock() - t0)
        done.append(trial)
        per_cost = max(per_cost, trial.seconds / trial.cost)
        if best is None or acc > best[1].val_accuracy:
            best = (student, trial)
        if acc >= target:
            stopped = "target reached"
            break
    assert best is not None  # recipes() always yields the configured recipe first
    return best[0], {
        "teacher_val_accuracy": round(teacher_val_accuracy, 5),
        "target_val_accuracy": round(target, 5),
        "trials": [t.record() for t in done],
        "chosen": best[1].record(),
        "stopped": stopped,
    }
