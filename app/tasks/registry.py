"""Where task classes are found: the built-ins below plus any ``shopinfer.tasks`` entry point.

A task living outside this repository registers itself in its package metadata::

    [project.entry-points."shopinfer.tasks"]
    my-task = "my_package.module:MyTask"

Keys are task ids (``preprocessing.kind``, the same as the task's ``name``); the registry and the route factory ask here and nowhere else.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from app.tasks.base import Route, Task
from app.tasks.ids import canonical

LOG = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "shopinfer.tasks"
BUILTIN_MODULES = ("app.tasks.ctr.task", "app.tasks.chat.task", "app.tasks.search.task", "app.tasks.recommend.task")
"""Each module exposes ``TASK``, its :class:`Task` subclass."""


@cache
def task_classes() -> dict[str, type[Task]]:
    """kind -> task class; a duplicate kind is a configuration error, not a silent override."""
    found: list[type[Task]] = []
    for module in BUILTIN_MODULES:
        found.append(importlib.import_module(module).TASK)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"entry point {ep.name!r} of {ENTRY_POINT_GROUP} is not a Task subclass: {cls!r}")
        found.append(cls)
    by_kind: dict[str, type[Task]] = {}
    for cls in found:
        if cls.kind != cls.name:
            raise ValueError(f"{cls.__name__}: kind {cls.kind!r} and name {cls.name!r} must both be the task id")
        if cls.kind in by_kind and by_kind[cls.kind] is not cls:
            raise ValueError(f"two task classes serve kind {cls.kind!r}: {by_kind[cls.kind]} and {cls}")
        by_kind[cls.kind] = cls
    return by_kind


def task_for_kind(kind: str) -> type[Task] | None:
    return task_classes().get(canonical(kind))


def all_routes() -> list[Route[Any]]:
    """Every task route, in a stable order (by path)."""
    routes = [r for cls in task_classes().values() for r in cls.routes]
    paths = [r.path for r in routes]
    if len(set(paths)) != len(paths):
        raise ValueError(f"two task routes share a path: {sorted(paths)}")
    return sorted(routes, key=lambda r: r.path)
