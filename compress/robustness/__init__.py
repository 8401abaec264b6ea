"""The robustness gate: how often a model's decision flips under small, realistic input perturbations.

A compressed model can match FP32 on clean held-out rows and still flip its decision on inputs live traffic is
full of (a typo, other casing, a missing feature, an unseen category). Each task builds a perturbation set from
its test split (:mod:`compress.robustness.perturb`, seeded, deterministic); every candidate runs the clean rows
and their perturbed copies, and :mod:`compress.robustness.flips` counts decision flips. The rule
(``[gate].max_flip_increase``): a candidate's flip rate may exceed FP32's by at most that margin, unless the
excess is within chance on the rows perturbed (``[gate].flip_significance``, a paired exact test).
"""

from compress.robustness.flips import RobustnessSet, check, excess_p_value, flip_rate

__all__ = ["RobustnessSet", "check", "excess_p_value", "flip_rate"]
