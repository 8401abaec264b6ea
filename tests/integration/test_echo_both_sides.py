"""A new task is one package per side plus a config and tests: the echo task (tests/fixtures/echo_task.py for the
service, tests/fixtures/echo_compress.py for compress) is registered on both sides, built by ``python -m compress
run`` from a TOML config, published, and served at ``POST /v1/echo`` — no other file changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.tasks import registry as service_registry
from compress import registry as compress_registry
from compress.cli import main as compress_main
from tests.fixtures.asgi import running_app

pytestmark = pytest.mark.integration

CONFIG = """
candidates = ["fp32", "int8_weights"]

[model]
name = "echo"
task = "echo"

[data]
path = "{data}"
label = "learned-double"

[latency]
batch_sizes = [1, 64]
repeats = 5

[engine]
enabled = false

[publish]
baseline = false
warmup_batch_sizes = [1, 8]
"""


@pytest.fixture
def echo_on_both_sides(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(
        service_registry, "BUILTIN_MODULES", (*service_registry.BUILTIN_MODULES, "tests.fixtures.echo_task")
    )
    monkeypatch.setattr(
        compress_registry, "BUILTIN_MODULES", (*compress_registry.BUILTIN_MODULES, "tests.fixtures.echo_compress")
    )
    service_registry.task_classes.cache_clear()
    compress_registry.task_specs.cache_clear()
    yield
    service_registry.task_classes.cache_clear()
    compress_registry.task_specs.cache_clear()


async def test_echo_is_built_by_config_published_and_served(tmp_path: Path, echo_on_both_sides: None) -> None:
    x = np.random.default_rng(0).uniform(-1, 1, 2000)
    data = tmp_path / "echo.csv"
    data.write_text("x,y\n" + "".join(f"{v:.6f},{2 * v:.6f}\n" for v in x))
    config = tmp_path / "echo.toml"
    config.write_text(CONFIG.format(data=data))
    repo = tmp_path / "repo"

    rc = compress_main(["-q", "run", str(config), "--repo", str(repo)])

    assert rc == 0, f"python -m compress run exited {rc}"
    manifest = json.loads((repo / "echo" / "1" / "manifest.json").read_text())
    assert (manifest["task"], manifest["preprocessing"]["kind"]) == ("echo", "echo"), manifest["preprocessing"]
    assert manifest["candidate"] == "int8_weights", f"selected {manifest['candidate']}: {manifest['recipe']}"
    async with running_app(repo, max_queue_delay_us=0) as svc:
        r = await svc.client.post("/v1/echo", json={"values": [0.5, -0.25, 0]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["label"] == "learned-double" and body["model"] == "echo" and body["version"] == 1, body
        assert np.allclose(body["doubled"], [1.0, -0.5, 0.0], atol=0.02), f"INT8 model doubled to {body['doubled']}"
