"""A new task is one module: registering tests/fixtures/echo_task.py mounts /v1/echo with the shared timing,
errors, metrics and OpenAPI docs, and its versions load through the same registry — no other file changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.tasks import registry as task_registry
from tests.fixtures.asgi import running_app
from tests.fixtures.echo_task import publish_echo_version


@pytest.fixture
def with_echo_task(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(task_registry, "BUILTIN_MODULES", (*task_registry.BUILTIN_MODULES, "tests.fixtures.echo_task"))
    task_registry.task_classes.cache_clear()
    yield
    task_registry.task_classes.cache_clear()


async def test_one_module_adds_an_endpoint(tmp_path: Path, with_echo_task: None) -> None:
    publish_echo_version(tmp_path)
    async with running_app(tmp_path, max_queue_delay_us=0) as svc:
        r = await svc.client.post("/v1/echo", json={"values": [1.5, -2, 0]})
        assert r.status_code == 200, r.text
        assert r.json() == {"doubled": [3.0, -4.0, 0.0], "label": "times-two", "model": "echo", "version": 1}
        bad = await svc.client.post("/v1/echo", json={"values": []})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_values", (bad.status_code, bad.text)
        junk = await svc.client.post("/v1/echo", content=b"{", headers={"content-type": "application/json"})
        assert junk.status_code == 400 and junk.json()["error"]["code"] == "invalid_json", (junk.status_code, junk.text)
        assert await svc.metric("inference_requests_total", endpoint="echo", code="ok") == 1
        assert await svc.metric("inference_requests_total", endpoint="echo", code="invalid_values") == 1
        doc = (await svc.client.get("/openapi.json")).json()["paths"]["/v1/echo"]["post"]
        assert doc["summary"] == "Double some numbers" and "422" in doc["responses"]
        meta = (await svc.client.get("/v2/models/echo")).json()
        assert meta["platform"] == "onnxruntime_onnx"


async def test_a_model_of_another_task_is_refused_with_a_code(tmp_path: Path, with_echo_task: None) -> None:
    publish_echo_version(tmp_path)
    async with running_app(tmp_path, task_models={"ctr": "echo"}) as svc:
        r = await svc.client.post("/v1/ads/ctr", json={"candidates": [{"ad_id": "a"}]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "wrong_task", (r.status_code, r.text)


def test_task_without_a_kind_module_is_unknown() -> None:
    assert task_registry.task_for_kind("echo") is None
    assert {"ctr", "chat", "recommend", "search"} <= set(task_registry.task_classes())
    assert task_registry.task_for_kind("ctr-v1") is task_registry.task_for_kind("ctr"), (
        "older kind names must still load"
    )
