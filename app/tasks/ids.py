"""Task ids: one name per task for its package on both sides, settings key, manifest ``task``, preprocessing
``kind``, compress config ``model.task`` and metric label (the table is in docs/concepts.md, "Tasks").

Versions published under the older names still load: every reader of a task or kind name passes it through
:func:`canonical` — this map is the only place the old names live.
"""

from __future__ import annotations

ALIASES: dict[str, str] = {
    # manifest ``task`` / compress ``model.task`` values
    "ad_ctr": "ctr",
    "chat_intent": "chat",
    "recommendation": "recommend",
    "search_rank": "search",
    # preprocessing ``kind`` values (state files carry them too)
    "ctr-v1": "ctr",
    "chat-v1": "chat",
    "rec-v1": "recommend",
    "search-v1": "search",
    "echo-v1": "echo",
}
"""Older name -> task id."""


def canonical(name: str) -> str:
    """The task id for ``name``, which may be an id already or one of the older names."""
    return ALIASES.get(name, name)
