"""One id per task: the same name for both packages, both registries, the manifest and the config; versions and
configs written with the older names still load (through the one alias map in app/tasks/ids.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.manifest import Manifest
from app.tasks import registry as service_registry
from app.tasks.ids import ALIASES, canonical
from compress import registry as compress_registry
from compress.config import parse_config
from compress.errors import ConfigError
from tests.unit.test_manifest_repo import make_manifest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_each_task_has_one_id_on_both_sides() -> None:
    service = set(service_registry.task_classes())
    offline = set(compress_registry.task_specs())
    assert service == offline, f"service tasks {sorted(service)} != compress tasks {sorted(offline)}"
    for task_id, cls in service_registry.task_classes().items():
        assert cls.name == cls.kind == task_id, f"{cls.__name__}: name {cls.name!r}, kind {cls.kind!r}"
    app_pkgs = {p.parent.name for p in (ROOT / "app" / "tasks").glob("*/task.py")}
    # a task package has its adapter (task.py) next to its config; compress/imported/ (models trained elsewhere,
    # served as raw KServe v2 models) has a config but is not a task
    compress_pkgs = {p.parent.name for p in (ROOT / "compress").glob("*/task.py") if (p.parent / "config.py").exists()}
    assert app_pkgs == service, f"app/tasks/<task>/ packages {sorted(app_pkgs)} != task ids {sorted(service)}"
    assert compress_pkgs == offline, f"compress/<task>/ packages {sorted(compress_pkgs)} != task ids {sorted(offline)}"


def test_aliases_point_at_known_ids() -> None:
    known = set(service_registry.task_classes()) | {"echo"}  # echo: the test fixture task
    stray = {old: new for old, new in ALIASES.items() if new not in known}
    assert not stray, f"aliases to no task: {stray}"
    assert canonical("ctr") == "ctr" and canonical("ad_ctr") == "ctr"


@pytest.mark.parametrize(
    ("old_task", "old_kind", "task_id"),
    [("ad_ctr", "ctr-v1", "ctr"), ("chat_intent", "chat-v1", "chat"), ("recommendation", "rec-v1", "recommend"),
     ("search_rank", "search-v1", "search")],
)  # fmt: skip
def test_a_manifest_published_with_old_names_loads_as_the_id(
    tmp_path: Path, old_task: str, old_kind: str, task_id: str
) -> None:
    raw = make_manifest(tmp_path, 1).model_dump(mode="json")
    raw["task"] = old_task
    raw["preprocessing"] = {"kind": old_kind, "path": "pre.json", "code_version": "x"}
    m = Manifest.model_validate(raw)
    assert (m.task, m.preprocessing and m.preprocessing.kind) == (task_id, task_id), m.model_dump(mode="json")
    assert service_registry.task_for_kind(old_kind) is service_registry.task_for_kind(task_id) is not None


def test_a_config_with_an_old_task_name_runs_as_the_id() -> None:
    data = {"path": "x.parquet", "user": "u", "item": "i", "timestamp": "t"}
    cfg = parse_config({"model": {"name": "r", "task": "recommendation"}, "candidates": ["fp32"], "data": data})
    assert cfg.model.task == "recommend" and type(cfg) is compress_registry.config_class("recommend"), cfg


def test_an_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"'nope' is not a compress task; known: \['chat', 'ctr'"):
        parse_config({"model": {"name": "r", "task": "nope"}, "candidates": ["fp32"], "data": {}}, "x.toml")
