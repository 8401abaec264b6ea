"""The API reference: a valid OpenAPI 3 document where every task route has a summary, request and response
examples and its coded errors; /docs and /redoc work without internet (assets served locally)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from app.main import create_app
from app.settings import Settings
from app.tasks.registry import all_routes


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = create_app(Settings(model_repo=tmp_path_factory.mktemp("empty")))
    spec: dict[str, Any] = app.openapi()
    return spec


def test_the_served_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validate(doc)  # raises with the first violation


@pytest.mark.parametrize("path", [r.path for r in all_routes()])
def test_every_task_route_is_documented_with_examples_and_errors(doc: dict[str, Any], path: str) -> None:
    op = doc["paths"][path]["post"]
    assert op["summary"] and op["summary"] != "Handle" and op.get("description")
    body = op["requestBody"]["content"]["application/json"]
    assert body.get("examples"), f"{path}: no request example"
    assert op["responses"]["200"]["content"]["application/json"].get("example"), f"{path}: no response example"
    codes = {int(c) for c in op["responses"] if c.isdigit()}
    assert {400, 422, 503, 504} <= codes, f"{path}: documented statuses {sorted(codes)}"
    error = op["responses"]["422"]["content"]["application/json"]["schema"]
    assert error["properties"]["error"]["required"] == ["code", "message"]


async def test_docs_pages_load_their_assets_from_this_service(tmp_path: Path) -> None:
    app = create_app(Settings(model_repo=tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for page in ("/docs", "/redoc"):
            html = (await client.get(page)).text
            assert "/docs-assets/" in html, html
            # nothing fetched from elsewhere: no CDN, no web font, no absolute URL in any src/href
            remote = re.findall(r"""(?:src|href)=["']?(https?://[^"'\s>]+)""", html) + re.findall(r"@import[^;]+", html)
            assert not remote and "cdn" not in html.lower() and "fonts.googleapis" not in html, (page, remote)
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            r = await client.get(f"/docs-assets/{asset}")
            assert r.status_code == 200 and len(r.content) > 10_000, (r.status_code, r.text)
