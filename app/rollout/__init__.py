"""Online rollout of new versions: the per-model policy (stable, canary, shadow), routing, shadow comparison,
automatic rollback and the rollout summary. The policy lives in the model repository (``<model>/policy.json``)
so every worker and every pod reads the same one."""
