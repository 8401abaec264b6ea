"""The one place every live answer passes after it was computed (task routes, KServe v2, HTTP and gRPC alike):
rollout comparisons start here. Cheap when the model has no policy: one dictionary lookup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.registry import ModelRegistry
    from app.rollout.shadow import Mirror
    from app.tasks.base import Route


def answered(
    registry: ModelRegistry,
    mirror: Mirror,
    model: str,
    version: int,
    route: Route[Any] | None,
    req: Any,
    result: Any,
    rows: int = 0,
) -> None:
    """``result``: the route handler's answer, or the output tensors of a v2 request of ``rows`` rows."""
    policy = registry.policies.get(model)
    if policy is not None:
        mirror.after(policy, model, version, route, req, result, rows)
