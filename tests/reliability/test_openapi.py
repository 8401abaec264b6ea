"""Defect 8: /openapi.json is valid and complete, and schemathesis finds no 5xx and no response-schema violation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import ServerFactory
from tests.reliability.conftest import ready, start

MAX_EXAMPLES = 15  # per operation: bounded CI time


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
    from schemathesis.checks import (
        content_type_conformance,
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
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            nonlocal cases
            cases += 1
            try:
                case.call_and_validate(base_url=server.url, checks=checks, timeout=10)
            except Exception as e:  # noqa: BLE001 - collect every failing operation, then report
                failures.append(f"{label}: {str(e)[:400]}")  # noqa: B023 - run() is called in this iteration

        run()
    assert cases > 100
    assert not failures, "\n".join(failures[:10])
