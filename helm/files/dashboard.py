"""Generates ``dashboard.json`` (the chart's Grafana dashboard) with grafana-foundation-sdk.

The JSON is checked in so the chart needs no Python; a test compares it with this script's output, and another
evaluates every panel expression against a real Prometheus scraping a real service. Edit this file, then::

    python helm/files/dashboard.py      # rewrites helm/files/dashboard.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, heatmap, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).with_name("dashboard.json")
UID = "shopinfer-serving"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'model=~"$model", version=~"$version"'
RATE = "[$__rate_interval]"
ROLL = 'model=~"$model"'


def query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)


def series(title: str, unit: str, *targets: tuple[str, str], description: str = "") -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DS).height(8).span(12).description(description)
    for i, (expr, legend) in enumerate(targets):
        panel = panel.with_target(query(expr, legend, chr(ord("A") + i)))
    return panel


def quantiles(title: str, metric: str, description: str) -> timeseries.Panel:
    by = f"sum by (model, version, le) (rate({metric}_bucket{{{SEL}}}{RATE}))"
    return series(
        title,
        "s",
        (f"histogram_quantile(0.5, {by})", "p50 {{model}}/{{version}}"),
        (f"histogram_quantile(0.99, {by})", "p99 {{model}}/{{version}}"),
        description=description,
    )


def build() -> dict[str, Any]:
    """The dashboard as a JSON-ready dict."""
    ds_var = dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
    model_var = (
        dashboard.QueryVariable("model")
        .label("Model")
        .datasource(DS)
        .query("label_values(inference_requests_total, model)")
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(2)
    )
    version_var = (
        dashboard.QueryVariable("version")
        .label("Version")
        .datasource(DS)
        .query('label_values(inference_requests_total{model=~"$model"}, version)')
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(2)
    )
    batch_heatmap = (
        heatmap.Panel()
        .title("Batch size distribution (rows per batch)")
        .datasource(DS)
        .height(8)
        .span(12)
        .with_target(
            query(f"sum by (le) (increase(inference_batch_rows_bucket{{{SEL}}}{RATE}))", "{{le}}").format("heatmap")
        )
    )
    board = (
        dashboard.Dashboard("shopinfer: inference serving")
        .uid(UID)
        .tags(["shopinfer", "inference"])
        .description("Per model and version: traffic, errors, latency split, batching, admission, lifecycle.")
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(ds_var)
        .with_variable(model_var)
        .with_variable(version_var)
        .with_row(dashboard.Row("Traffic and errors"))
        .with_panel(
            series(
                "Request rate",
                "reqps",
                (f"sum by (model, version) (rate(inference_requests_total{{{SEL}}}{RATE}))", "{{model}}/{{version}}"),
            )
        )
        .with_panel(
            series(
                "Errors by code",
                "reqps",
                (
                    f'sum by (model, code) (rate(inference_requests_total{{{SEL}, outcome="error"}}{RATE}))',
                    "{{model}} {{code}}",
                ),
                description="4xx codes are client mistakes; internal, inference_failed, deadline_exceeded and "
                "model_not_ready are the service's own (ShopinferHighErrorRatio).",
            )
        )
        .with_panel(
            series(
                "Admission refusals",
                "reqps",
                (
                    f"sum by (model, version) (rate(inference_admission_refusals_total{{{SEL}}}{RATE}))",
                    "{{model}}/{{version}}",
                ),
                description="503 overloaded: refused before queueing because the queue budget would be exceeded.",
            )
        )
        .with_panel(
            series(
                "In flight and queued",
                "short",
                (f"sum by (model, version) (inference_in_flight{{{SEL}}})", "in flight {{model}}/{{version}}"),
                (f"sum by (model, version) (inference_queue_rows{{{SEL}}})", "queued rows {{model}}/{{version}}"),
            )
        )
        .with_row(dashboard.Row("Latency: end to end = queue + compute + the rest"))
        .with_panel(quantiles("End-to-end latency", "inference_request_duration_seconds", "Inside the service."))
        .with_panel(quantiles("Queue wait", "inference_queue_duration_seconds", "Before the batch starts."))
        .with_panel(quantiles("Batch compute", "inference_compute_duration_seconds", "Featurizing + model."))
        .with_panel(batch_heatmap)
        .with_row(dashboard.Row("Lifecycle and health"))
        .with_panel(
            series(
                "Model load / unload events",
                "short",
                (
                    f"sum by (model, version, event) (increase(model_load_events_total{{{SEL}}}{RATE}))",
                    "{{event}} {{model}}/{{version}}",
                ),
                (
                    f"sum by (model, version, reason) (increase(model_load_failures_total{{{SEL}}}{RATE}))",
                    "failed ({{reason}}) {{model}}/{{version}}",
                ),
            )
        )
        .with_panel(
            series(
                "READY versions (minimum over workers)",
                "short",
                ('min by (model) (model_ready_versions{model=~"$model"})', "{{model}}"),
                (f"sum by (model, version) (model_loaded_bytes{{{SEL}}}) / 1e6", "MB {{model}}/{{version}}"),
            )
        )
        .with_panel(
            series(
                "Worker restarts and background crashes",
                "short",
                (f"sum(increase(worker_restarts_total{RATE}))", "worker restarts"),
                (f"sum by (task) (increase(background_task_crashes_total{RATE}))", "crashed: {{task}}"),
            )
        )
        .with_panel(
            series(
                "Feature store degradation",
                "reqps",
                (f"sum by (reason) (rate(rec_feature_store_degraded_total{RATE}))", "degraded rows: {{reason}}"),
                (f"sum by (type, outcome) (rate(rec_events_total{RATE}))", "events {{type}} {{outcome}}"),
                description="Recommendations answered without Redis (ShopinferFeatureStoreDegraded).",
            )
        )
        .with_row(dashboard.Row("Rollout: shadow, canary, rollback (docs/rollout.md)"))
        .with_panel(
            series(
                "Agreement with the reference (mean, 0-1)",
                "percentunit",
                (
                    f"sum by (model, role, version, reference) (rate(rollout_agreement_sum{{{ROLL}}}{RATE}))"
                    f" / sum by (model, role, version, reference) (rate(rollout_agreement_count{{{ROLL}}}{RATE}))",
                    "{{role}} {{model}}/{{version}} vs {{reference}}",
                ),
                description="Per task: candidates within 0.02 pCTR, same intent, top-10 overlap, 1 - max abs diff.",
            )
        )
        .with_panel(
            series(
                "Comparisons: scored, dropped (busy), errors",
                "reqps",
                (
                    f"sum by (model, role, outcome) (rate(rollout_comparisons_total{{{ROLL}}}{RATE}))",
                    "{{outcome}} {{role}} {{model}}",
                ),
            )
        )
        .with_panel(
            series(
                "Comparison measures (mean)",
                "short",
                (
                    f"sum by (model, role, version, measure) (rate(rollout_difference_sum{{{ROLL}}}{RATE}))"
                    f" / sum by (model, role, version, measure) (rate(rollout_difference_count{{{ROLL}}}{RATE}))",
                    "{{measure}} {{role}} {{model}}/{{version}}",
                ),
            )
        )
        .with_panel(
            series(
                "Canary weight and rollbacks",
                "short",
                (f"max by (model, version) (rollout_canary_weight{{{ROLL}}})", "weight {{model}}/{{version}}"),
                (
                    f"sum by (model, version, limit) (increase(rollout_rollbacks_total{{{ROLL}}}{RATE}))",
                    "rolled back ({{limit}}) {{model}}/{{version}}",
                ),
                description="A rollback fires ShopinferCanaryRolledBack; the reason is in the policy's events.",
            )
        )
        .with_panel(
            series(
                "Drift: PSI per feature (top 10)",
                "short",
                (
                    f"topk(10, max by (model, version, feature) (model_drift_psi{{{SEL}}}))",
                    "{{model}}/{{version}} {{feature}}",
                ),
                description="Population stability of live inputs/outputs against the version's reference: < 0.1 "
                "stable, 0.1-0.25 moderate, > 0.25 significant (ShopinferDriftSignificant; docs/operations.md, Drift).",
            )
        )
    )
    data: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(board.build()))
    return data


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)
