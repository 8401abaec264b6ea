"""Every dashboard panel and alert rule, evaluated by a real Prometheus scraping a real 2-worker service.

The service serves the CTR and recommendation models with Redis as its feature store, under a small bounded
load that also produces errors, a failed version load, a worker restart and a Redis outage. Prometheus scrapes
it every second with the alert rules loaded. Then every expression of the dashboard and of the rules is run
through Prometheus' HTTP API: each must parse and evaluate, reference only metrics the service defines (a
renamed metric fails here, not on an operator's screen), and each panel must show data unless it only shows
faults this run does not cause.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from app.metrics import Metrics
from app.rollout.policy import set_change, update_policy
from tests.fixtures.compress_run import CompressRun
from tests.fixtures.ctr_model import publish_ctr_version, raw_records, with_drift_reference
from tests.fixtures.servers import RedisServer, ServerFactory, ServerProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "files" / "dashboard.json"
RULES = ROOT / "helm" / "files" / "alerts.yaml"
# panels that only show faults this run does not provoke (admission refusals, background-loop crashes)
FAULT_ONLY = {"inference_admission_refusals_total", "background_task_crashes_total", "rollout_rollbacks_total"}
CANARY_MODEL = "ad-ctr-rollout"
"""Two versions under a rollout policy (canary and shadow), fed raw tensors: the rollout panels' series."""
V2_BODY = {
    "inputs": [
        {"name": "dense", "datatype": "FP32", "shape": [1, 13], "data": [0.0] * 13},
        {"name": "sparse", "datatype": "INT64", "shape": [1, 26], "data": [0] * 26},
    ]
}
_FUNCTIONS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def grafana_to_promql(expr: str) -> str:
    """A panel expression as Grafana sends it with "All" selected."""
    return expr.replace("$model", ".*").replace("$version", ".*").replace("$__rate_interval", "20s")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (label matchers, ranges, strings and grouping removed first)."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", " ", text)  # numbers: 1e6, 0.99
    names = set()
    for m in re.finditer(r"[A-Za-z_:][\w:]*", text):
        following = text[m.end() :].lstrip()
        if m.group() not in _FUNCTIONS and not following.startswith("("):
            names.add(m.group())
    return names


def defined_metrics() -> set[str]:
    """Every sample name the service can export (families without samples included), from its own code."""
    from app.tasks.recommend.task import RecMetrics

    metrics = Metrics(CollectorRegistry())

    class Ctx:
        pass

    ctx = Ctx()
    ctx.metrics = metrics  # type: ignore[attr-defined]
    RecMetrics(ctx)  # type: ignore[arg-type]
    text = generate_latest(metrics.registry).decode()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",),
            }.get(kind, ("",))
            names |= {name + s for s in suffixes} | {name}
    names.add("worker_restarts_total")  # written by the supervising process of a multi-worker pod (app.workers)
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r.get("alert") or r["record"], r["expr"]) for g in groups for r in g["rules"]]


def test_expression_parser_finds_metric_names() -> None:
    expr = 'sum by (model, le) (rate(a_bucket{model=~"x(y)"}[5m])) / min by (m) (b) / 1e6 == 0 unless on(x) c_total'
    assert metric_names(expr) == {"a_bucket", "b", "c_total"}, metric_names(expr)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is missing: .ci/run installs Debian's prometheus package"
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def start(target: str) -> str:
        port = free_port()
        shutil.copy(RULES, tmp_path / "alerts.yaml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "alerts.yaml")],
            "scrape_configs": [{"job_name": "shopinfer", "static_configs": [{"targets": [target]}]}],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = open(tmp_path / "prometheus.log", "wb")  # closed at teardown
        logs.append(log)
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ok(url + "/-/ready"), 60, "prometheus to be ready")
        return url

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for log in logs:
        log.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def query(prom: str, expr: str) -> list[Any]:
    r = httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=30)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {r.status_code} {body}"
    return list(body["data"]["result"])


def _text(server: ServerProcess, path: str) -> str:
    """The body of ``GET path``, or "" when the connection drops (a request may land on the worker just killed)."""
    try:
        return server.get(path).text
    except httpx.TransportError:
        return ""


def _status(server: ServerProcess, path: str) -> int:
    try:
        return server.get(path).status_code
    except httpx.TransportError:
        return 0


def _load(server: ServerProcess, stop: threading.Event, rec_user: str) -> None:
    """Small, bounded traffic: CTR scoring, recommendations, events and some refused bad requests."""
    ctr = {"candidates": [{"ad_id": f"a{i}", "features": r} for i, r in enumerate(raw_records(8, 8000))]}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        while not stop.is_set():
            for call in (
                lambda: client.post("/v1/ads/ctr", json=ctr),
                lambda: client.post("/v1/recommend", json={"user_id": rec_user, "k": 5}),
                lambda: client.post("/v1/events", json={"user_id": rec_user, "item_id": "21977", "type": "view"}),
                lambda: client.post("/v1/ads/ctr", json={"candidates": "nope"}),
                lambda: client.post(f"/v2/models/{CANARY_MODEL}/infer", json=V2_BODY),
            ):
                try:
                    call()
                except httpx.HTTPError:
                    pass  # a worker being restarted drops a connection: the load goes on
            time.sleep(0.02)


@pytest.mark.timeout(600)
def test_every_dashboard_and_alert_expression_evaluates_on_real_metrics(
    rec_compress_run: CompressRun,
    tmp_path: Path,
    start_server: ServerFactory,
    redis_server: RedisServer,
    prometheus: Any,
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(rec_compress_run.repo, repo)
    publish_ctr_version(repo, seed=0, tweak=with_drift_reference)  # model_drift_psi series
    for seed in (0, 1):
        publish_ctr_version(repo, seed=seed, model=CANARY_MODEL)
    change = set_change(stable=1, canary=2, weight=0.5, shadow=2, shadow_rate=1.0)
    update_policy(repo, CANARY_MODEL, change)
    server = start_server(
        repo,
        APP_ROLLOUT_CHECK_INTERVAL_S="0.5",
        APP_DRIFT_SAMPLE_RATE="1",
        APP_DRIFT_MIN_ROWS="10",
        REDIS_URL=redis_server.url,
        APP_TASK_MODELS=json.dumps({"recommend": rec_compress_run.cfg.model.name}),
        APP_RESCAN_INTERVAL_S="0.5",
    )
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 120, "both models to be ready")
    prom = prometheus(server.url.removeprefix("http://"))

    stop = threading.Event()
    load = threading.Thread(target=_load, args=(server, stop, "12346"), daemon=True)
    load.start()
    try:
        publish_ctr_version(repo, seed=1, corrupt=True)  # a failed load (the good version keeps serving)
        wait_until(lambda: "model_load_failures_total" in _text(server, "/metrics"), 60, "the failed load")
        workers = [p for p in psutil.Process(server.proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in psutil.Process(server.proc.pid).children()]
        workers[0].kill()  # a worker restart
        wait_until(
            lambda: re.search(r"^worker_restarts_total [1-9]", _text(server, "/metrics"), re.M) is not None,
            60,
            "the worker restart to be counted",
        )
        wait_until(lambda: _status(server, "/v2/health/ready") == 200, 120, "the restarted worker")
        redis_server.kill()  # the feature store degrades
        wait_until(lambda: "rec_feature_store_degraded_total" in _text(server, "/metrics"), 60, "degraded answers")
        wait_until(
            lambda: (
                bool(query(prom, 'count_over_time(up{job="shopinfer"}[1m]) >= 10'))
                and bool(query(prom, "rec_feature_store_degraded_total"))
            ),
            60,
            "ten scrapes, the last with the degraded counter",
        )
    finally:
        stop.set()
        load.join(15)

    defined = defined_metrics()
    problems: list[str] = []
    for title, raw in dashboard_exprs():
        expr = grafana_to_promql(raw)
        unknown = metric_names(expr) - defined
        if unknown:
            problems.append(f"panel {title!r}: unknown metrics {sorted(unknown)} in {raw}")
            continue
        result = query(prom, expr)
        if not result and not metric_names(expr) & FAULT_ONLY:
            problems.append(f"panel {title!r}: no series for {expr}")
    for name, expr in rule_exprs():
        unknown = metric_names(expr) - defined
        if unknown:
            problems.append(f"alert {name}: unknown metrics {sorted(unknown)}")
        query(prom, expr)  # parses and evaluates (firing or not)
        for metric in metric_names(expr) - FAULT_ONLY:  # the data it watches is really scraped
            if not query(prom, f"count({metric})"):
                problems.append(f"alert {name}: no {metric} series scraped")
    rules = httpx.get(prom + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    evaluated = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert set(evaluated) == {n for n, _ in rule_exprs()}, evaluated
    problems += [f"alert {n}: Prometheus rule health {h}" for n, h in evaluated.items() if h != "ok"]
    assert not problems, "\n".join(problems)
