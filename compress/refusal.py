"""What to try when no candidate can be published: advice built from the measured numbers of the refused ones.

A bare "nothing passed" leaves a new user guessing which knob matters. Each hint names the config key, the
value that would have changed the outcome where one can be computed, and the numbers it is based on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compress.candidates import Candidate


def _distilled(c: Candidate) -> bool:
    return c.name.split("+")[0] == "distilled"


def what_to_try(cands: Sequence[Candidate], select: Any, *, has_student: bool) -> list[str]:
    """Hints, most useful first, for a run where ``select`` (``[select]``) refused every candidate."""
    ref = next((c for c in cands if c.status == "reference"), None)
    if ref is None or not ref.bytes:
        return []
    hints: list[str] = []
    passed = sorted((c for c in cands if c.status == "passed" and c.bytes), key=lambda c: c.bytes)
    if passed:
        best = passed[0]
        ratio = ref.bytes / best.bytes
        if ratio < select.min_compression:
            hints.append(
                f"lower [select].min_compression to {ratio:.2f} or less: the smallest candidate that passed the gate, "
                f"{best.name}, is {ratio:.2f}x smaller than FP32 (the budget asks {select.min_compression:g}x)"
            )
    students = [c for c in cands if _distilled(c) and c.status == "failed" and c.gate is not None]
    if students:
        s = min(students, key=lambda c: c.bytes or 1 << 62)
        search = s.recipe.get("search") or {}
        tried = ", ".join(
            f"{t['layers']} x {t['epochs']} ep: {t['val_accuracy']:.4f}" for t in search.get("trials", [])
        )
        hints.append(
            f"the distilled student failed the gate ({s.name}: {s.gate.reason if s.gate else ''}"
            + (
                f"; validation accuracy per trial {tried} vs teacher {search['teacher_val_accuracy']:.4f}"
                if tried
                else ""
            )
            + "): give it more to learn from or more room: [distill].search_epochs (e.g. [6, 10]), a wider student "
            "([distill].search_layers, up to [0, 1, 2, 3, 4, 5]), a larger [distill].max_search_s, more rows per "
            "intent ([data].max_train_per_intent)"
        )
    elif has_student and not any(_distilled(c) for c in cands):
        hints.append(
            "list a distilled candidate (e.g. 'distilled+int8_dynamic_s8'): INT8 of the full model alone "
            "is rarely 4x smaller"
        )
    flaky = [c.name for c in cands if c.robustness.get("status") == "failed"]
    if flaky:
        hints.append(
            f"{', '.join(flaky)} flipped decisions under perturbed inputs more often than FP32 allows: try the "
            "QAT or FP32-fallback variants of those candidates, or (if the data's perturbations make no sense) "
            "raise [gate].max_flip_increase or set [robustness] enabled = false"
        )
    failed_int8 = [c for c in cands if not _distilled(c) and c.status == "failed" and "int8" in c.name]
    if failed_int8 and not passed:
        hints.append("INT8 candidates failed the gate: [gate].fallback = true keeps the most sensitive layers in FP32")
    return hints
