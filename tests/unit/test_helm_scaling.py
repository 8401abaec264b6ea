"""The chart scales and drains: HPA (CPU + optional queue-time Pods metric), PDB, gRPC port and probes, preStop +
grace matched to the drain timeout, ServiceMonitor, Redis URL from a Secret, publisher Job/CronJob — rendered for
several values files and every built-in object checked against the Kubernetes OpenAPI schemas (kubernetes-validate,
offline, strict: unknown fields fail). Needs `helm` (.ci/install-helm.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm"
HELM = shutil.which("helm")
K8S_VERSION = "1.30.0"  # oldest release the chart targets (gRPC probes GA in 1.27, autoscaling/v2 in 1.23)
VALUES = [None, *sorted((CHART / "ci").glob("*-values.yaml"))]
pytestmark = pytest.mark.skipif(HELM is None, reason="helm not installed (bash .ci/install-helm.sh)")


def render(*args: str) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [HELM or "helm", "template", "t", str(CHART), *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return {d["kind"]: d for d in docs}


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    c: dict[str, Any] = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return c


@pytest.mark.parametrize("values", VALUES, ids=lambda v: v.name if v else "defaults")
def test_every_values_file_lints_renders_and_passes_the_kubernetes_schemas(values: Path | None) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (dev extra) holds the schemas offline")
    args = ["-f", str(values)] if values else []
    lint = subprocess.run([HELM or "helm", "lint", str(CHART), *args], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0 and "0 chart(s) failed" in lint.stdout, lint.stdout + lint.stderr
    objs = render(*args)
    for kind, obj in objs.items():
        if kind == "ServiceMonitor":  # a CRD: no schema in the Kubernetes OpenAPI document
            assert obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["spec"]["endpoints"][0]["port"] == "http"
            continue
        kv.validate(obj, K8S_VERSION, strict=True)  # raises ValidationError on any schema violation


def test_schema_check_catches_a_wrong_field() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    hpa = render()["HorizontalPodAutoscaler"]
    hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilisation"] = 70
    with pytest.raises(kv.ValidationError):
        kv.validate(hpa, K8S_VERSION, strict=True)


def test_defaults_autoscale_on_cpu_keep_one_pod_up_and_drain_within_the_grace_period() -> None:
    objs = render()
    hpa = objs["HorizontalPodAutoscaler"]
    assert (
        hpa["apiVersion"] == "autoscaling/v2"
        and hpa["spec"]["scaleTargetRef"]["name"] == objs["Deployment"]["metadata"]["name"]
    )
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
    assert "replicas" not in objs["Deployment"]["spec"]  # the HPA owns the replica count
    assert objs["PodDisruptionBudget"]["spec"]["selector"] == objs["Deployment"]["spec"]["selector"]
    c = container(objs)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8000, "grpc": 8001}
    svc_ports = {p["name"]: p for p in objs["Service"]["spec"]["ports"]}
    assert svc_ports["grpc"]["port"] == 8001 and svc_ports["grpc"]["appProtocol"] == "grpc"
    cfg = objs["ConfigMap"]["data"]
    assert cfg["APP_GRPC_PORT"] == "8001" and cfg["APP_GRPC_MAX_MESSAGE_BYTES"] == "8388608"
    sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = objs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > sleep + float(cfg["APP_DRAIN_TIMEOUT_S"])  # the kubelet never kills a pod mid-drain


def test_grpc_probes_queue_time_metric_service_monitor_and_redis_secret() -> None:
    objs = render("-f", str(CHART / "ci" / "grpc-probes-values.yaml"))
    c = container(objs)
    assert c["readinessProbe"]["grpc"] == {"port": 8001}  # service "": SERVING only while ready
    assert c["livenessProbe"]["grpc"] == {"port": 8001, "service": "liveness"}
    pods = [m for m in objs["HorizontalPodAutoscaler"]["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods and pods[0]["pods"]["metric"]["name"] == "inference_queue_seconds"
    assert "ServiceMonitor" in objs
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
    assert env["REDIS_URL"] == {"name": "shopinfer-redis", "key": "url"}
    assert "Secret" not in objs  # an existing Secret is referenced, not rendered


def test_redis_url_value_goes_through_a_secret_not_the_configmap() -> None:
    objs = render("--set", "redisUrl=redis://:pw@redis:6379/0")
    assert objs["Secret"]["stringData"]["url"] == "redis://:pw@redis:6379/0"
    assert "REDIS_URL" not in objs["ConfigMap"]["data"]
    assert {
        "name": "REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": objs["Secret"]["metadata"]["name"], "key": "url"}},
    } in container(objs)["env"]


def test_publisher_runs_compress_into_the_shared_volume_and_is_never_selected_as_a_serving_pod() -> None:
    objs = render("-f", str(CHART / "ci" / "publisher-cronjob-values.yaml"))
    cron = objs["CronJob"]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    args = pod["spec"]["containers"][0]["args"]
    assert args[:1] == ["run"] and args[2:] == ["--repo", "/models"]
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["spec"]["volumes"]}
    deploy_claim = objs["Deployment"]["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claims["models"] == deploy_claim
    selector = objs["Service"]["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    job = render("--set", "publisher.enabled=true")["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][0] == "run"
    out = subprocess.run(
        [HELM or "helm", "template", "t", str(CHART), "--set", "publisher.enabled=true",
         "--set", "modelRepo.persistentVolumeClaim.enabled=false"], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0 and "publisher.enabled needs modelRepo.persistentVolumeClaim.enabled" in out.stderr


def test_refusal_in_front_of_the_pods_is_off_by_default_and_rendered_as_ingress_nginx_limits() -> None:
    assert "Ingress" not in render(), "no Ingress unless asked for"
    plain = render("--set", "ingress.enabled=true")["Ingress"]
    assert not any("limit" in k for k in plain["metadata"].get("annotations", {})), plain["metadata"]
    objs = render("-f", str(CHART / "ci" / "ingress-limits-values.yaml"))
    ing = objs["Ingress"]
    notes = ing["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/limit-rps"] == "600", notes
    assert notes["nginx.ingress.kubernetes.io/limit-burst-multiplier"] == "2", notes
    assert notes["nginx.ingress.kubernetes.io/limit-connections"] == "32", notes
    assert notes["nginx.ingress.kubernetes.io/limit-whitelist"] == "10.0.0.0/8", notes
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": objs["Service"]["metadata"]["name"], "port": {"name": "http"}}, backend
    assert ing["spec"]["rules"][0]["host"] == "shop.example.com" and ing["spec"]["tls"][0]["secretName"] == "shop-tls"
    only_conns = render("--set", "ingress.enabled=true", "--set", "ingress.limits.enabled=true",
                        "--set", "ingress.limits.connectionsPerClient=8")["Ingress"]["metadata"]["annotations"]  # fmt: skip
    assert only_conns == {"nginx.ingress.kubernetes.io/limit-connections": "8"}, only_conns
