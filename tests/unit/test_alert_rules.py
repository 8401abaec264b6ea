"""The alert rules are valid and each fires when it should (``promtool test rules``), and the chart ships them
as a PrometheusRule only when asked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "helm" / "files" / "alerts.yaml"
RULE_TESTS = ROOT / "tests" / "unit" / "data" / "alerts_test.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is missing: .ci/run installs Debian's prometheus package"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def test_rules_are_valid() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    out = promtool("test", "rules", str(RULE_TESTS))
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_entry() -> None:
    alerts = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]
    tested = RULE_TESTS.read_text()
    runbook = (ROOT / "docs" / "operations.md").read_text()
    missing_tests = [a for a in alerts if f"alertname: {a}" not in tested]
    missing_runbook = [a for a in alerts if f"### {a}" not in runbook]
    assert len(alerts) >= 8 and not missing_tests and not missing_runbook, (alerts, missing_tests, missing_runbook)


def test_chart_renders_the_rules_file_as_a_prometheusrule_only_when_enabled() -> None:
    from tests.unit.test_helm_chart import CHART, helm

    assert "kind: PrometheusRule" not in helm("template", "t", str(CHART))
    docs = list(yaml.safe_load_all(helm("template", "t", str(CHART), "--set", "prometheusRule.enabled=true")))
    rule = next(d for d in docs if d and d["kind"] == "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"], rule["spec"]
