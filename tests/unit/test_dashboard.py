"""The chart's Grafana dashboard: the checked-in JSON is what the generator builds, covers what an operator
needs, and ships as a sidecar ConfigMap only when asked. (Every expression is evaluated against a real
Prometheus in tests/integration/test_prometheus_queries.py.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "helm" / "files" / "dashboard.py"
JSON_FILE = ROOT / "helm" / "files" / "dashboard.json"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shopinfer_dashboard", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_json_is_the_generated_one() -> None:
    assert JSON_FILE.read_text() == generator().render(), "run: python helm/files/dashboard.py"


def test_dashboard_covers_traffic_latency_batching_lifecycle_and_feature_store() -> None:
    board = json.loads(JSON_FILE.read_text())
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
    for metric in (
        "inference_requests_total", "inference_admission_refusals_total", "inference_in_flight",
        "inference_request_duration_seconds_bucket", "inference_queue_duration_seconds_bucket",
        "inference_compute_duration_seconds_bucket", "inference_batch_rows_bucket", "model_load_events_total",
        "model_load_failures_total", "model_ready_versions", "worker_restarts_total",
        "background_task_crashes_total", "rec_feature_store_degraded_total",
    ):  # fmt: skip
        assert metric in exprs, f"no panel uses {metric}"
    names = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "model", "version"} <= names, names


def test_chart_ships_the_dashboard_configmap_only_when_enabled() -> None:
    from tests.unit.test_helm_chart import CHART, helm

    assert "shopinfer-serving.json" not in helm("template", "t", str(CHART))
    docs = yaml.safe_load_all(helm("template", "t", str(CHART), "--set", "grafanaDashboard.enabled=true"))
    cm = next(d for d in docs if d and d["kind"] == "ConfigMap" and "shopinfer-serving.json" in d.get("data", {}))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1", cm["metadata"]
    assert json.loads(cm["data"]["shopinfer-serving.json"]) == json.loads(JSON_FILE.read_text())
