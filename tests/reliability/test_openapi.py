"""Defect 8: /openapi.json is valid and complete, and schemathesis finds no 5xx and no response-schema violation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import ServerFactory
from tests.reliability.conftest import ready, start

MAX_EXAMPLES = 15  # per operation: bounded CI time
NEGATIVE_EXAMPLES = 10  # per task operation, schema-invalid requests


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [
            *([node["$ref"]] if isinstance(node.get("$ref"), str) else []),
            *(r for v in node.values() for r in refs(v)),
        ]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_openapi_is_complete_and_fuzzes_clean(repo: Path, start_server: ServerFactory) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )  # fmt: skip

    server = start(start_server, repo)
    ready(server)
    doc = server.get("/openapi.json").json()
    components = doc.get("components", {}).get("schemas", {})
    missing = [r for r in refs(doc) if r.split("/")[-1] not in components]
    assert not missing, missing
    for path in ("/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer"):
        op = doc["paths"][path]["post"]
        names = {p["name"] for p in op["parameters"]}
        assert names == ({"model", "version"} if "{version}" in path else {"model"})
        assert op["requestBody"]["content"]["application/json"]["examples"]
    assert "get" in doc["paths"]["/metrics"]
    assert doc["paths"]["/v1/ads/ctr"]["post"]["requestBody"]["content"]["application/json"]["examples"]

    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(doc)))
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
    failures: list[str] = []
    cases = 0
    negative_checks = [not_a_server_error, negative_data_rejection]
    # positive: valid requests conform; negative: schema-invalid requests are refused with a 4xx, never a 2xx or
    # 5xx (the task endpoints, whose schemas the handlers enforce; v2's tensors are checked by their own decoder)
    runs = [
        (GenerationMode.POSITIVE, checks, MAX_EXAMPLES),
        (GenerationMode.NEGATIVE, negative_checks, NEGATIVE_EXAMPLES),
    ]
    for mode, mode_checks, examples in runs:
        for result in schema.get_all_operations():
            operation = result.ok()
            label = f"{mode.value} {operation.label}"
            if mode is GenerationMode.NEGATIVE and not operation.path.startswith("/v1/"):
                continue

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def run(case: Any) -> None:
                nonlocal cases
                cases += 1
                try:
                    case.call_and_validate(base_url=server.url, checks=mode_checks, timeout=10)  # noqa: B023
                except Exception as e:  # noqa: BLE001 - collect every failing operation, then report
                    failures.append(f"{label}: {str(e)[:400]}")  # noqa: B023 - run() is called in this iteration

            run()
    assert cases > 100
    assert not failures, "\n".join(failures[:10])


def test_schema_and_validation_agree_on_edge_cases(repo: Path, start_server: ServerFactory) -> None:
    """What the handlers refuse, the schema forbids (empty lists and texts, ``{}`` on recommend); what the schema
    types strictly, the validation refuses (a bool is not a number, 0 is not a bool)."""
    server = start(start_server, repo)
    ready(server)
    doc = server.get("/openapi.json").json()

    def body_schema(path: str) -> dict[str, Any]:
        schema: dict[str, Any] = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        return schema

    rows, columns = body_schema("/v1/ads/ctr")["oneOf"]  # the row body and the columnar one
    assert rows["properties"]["candidates"].get("minItems") == 1, rows
    assert columns["properties"]["ad_ids"].get("minItems") == 1 and "columns" in columns["required"], columns
    search = body_schema("/v1/search/rank")
    assert search["properties"]["candidates"].get("minItems") == 1, search
    assert body_schema("/v1/chat")["properties"]["message"].get("minLength") == 1, body_schema("/v1/chat")
    anyof = body_schema("/v1/recommend").get("anyOf", [])
    assert {tuple(a["required"]) for a in anyof} == {("user_id",), ("history",)}, body_schema("/v1/recommend")
    event = {"user_id": "u1", "item_id": "85123A", "type": "view"}
    for bad in ({"ts": False}, {"ts": True}, {"ts": "5"}):
        r = server.post("/v1/events", json={**event, **bad})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", (bad, r.status_code, r.text)
    r = server.post("/v1/events", json={**event, "ts": 1700000000})
    assert r.status_code != 422, r.text
    v2 = {"inputs": [{"name": "dense", "datatype": "FP32", "shape": [1, 13], "data": [0.0] * 13},
                     {"name": "sparse", "datatype": "INT64", "shape": [1, 26], "data": [2] * 26}]}  # fmt: skip
    r = server.post("/v2/models/ad-ctr/infer", json={**v2, "outputs": None})
    assert r.status_code == 400 and r.json()["code"] == "invalid_input", r.text
    assert server.post("/v2/models/ad-ctr/infer", json=v2).status_code == 200
