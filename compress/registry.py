"""Where compress finds its tasks: the built-ins below plus any ``shopinfer.compress_tasks`` entry point.

The mirror of :mod:`app.tasks.registry` on the offline side. A task living outside this repository registers
both halves in its package metadata::

    [project.entry-points."shopinfer.tasks"]
    my_task = "my_package.serve:MyTask"
    [project.entry-points."shopinfer.compress_tasks"]
    my_task = "my_package.compress_config:SPEC"

Keys are task ids; the config loader, the pipeline and the demo ask here and nowhere else.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

from app.tasks.ids import canonical
from compress.config import CompressConfig
from compress.errors import ConfigError
from compress.tasks import TaskAdapter, TaskSpec

ENTRY_POINT_GROUP = "shopinfer.compress_tasks"
BUILTIN_MODULES = ("compress.ctr.config", "compress.chat.config", "compress.recommend.config", "compress.search.config")
"""Each module exposes ``SPEC``, its :class:`TaskSpec`."""


@cache
def task_specs() -> dict[str, TaskSpec]:
    """task id -> spec; a duplicate id is a configuration error, not a silent override."""
    found: list[TaskSpec] = [importlib.import_module(m).SPEC for m in BUILTIN_MODULES]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = ep.load()
        if not isinstance(spec, TaskSpec):
            raise TypeError(f"entry point {ep.name!r} of {ENTRY_POINT_GROUP} is not a TaskSpec: {spec!r}")
        found.append(spec)
    by_id: dict[str, TaskSpec] = {}
    for spec in found:
        if spec.id in by_id and by_id[spec.id] is not spec:
            raise ValueError(f"two compress task specs have id {spec.id!r}: {by_id[spec.id]} and {spec}")
        by_id[spec.id] = spec
    return by_id


def spec_for(task: str) -> TaskSpec:
    """The spec of a task id (or an older task name); an unknown task names the known ones."""
    spec = task_specs().get(canonical(task))
    if spec is None:
        raise ConfigError(f"model.task {task!r} is not a compress task; known: {sorted(task_specs())}")
    return spec


def config_class(task: str) -> type[CompressConfig]:
    return spec_for(task).config


def get_task(cfg: CompressConfig) -> TaskAdapter:
    """The task adapter of a validated config."""
    return spec_for(cfg.model.task).load_adapter(cfg)
