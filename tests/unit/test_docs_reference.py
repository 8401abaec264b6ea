"""The HTTP reference is checked against the app's own OpenAPI document: a route the app serves must be documented."""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ValidationError

from app.main import create_app
from app.tasks.registry import all_routes
from compress.config import PROJECT_ROOT

HTTP_DOC = PROJECT_ROOT / "docs" / "reference" / "http.md"


def test_every_openapi_path_is_in_the_http_reference() -> None:
    paths = sorted(create_app().openapi()["paths"])
    text = HTTP_DOC.read_text()
    documented = set(re.findall(r"`(?:GET |POST )?(/[^`\s]*)`", text))
    missing = [p for p in paths if p not in documented]
    assert len(paths) >= 20, f"the OpenAPI document lists only {len(paths)} paths: {paths}"
    assert not missing, f"paths served but not documented in {HTTP_DOC.name}: {missing}"


def test_the_http_reference_documents_no_path_the_app_does_not_serve() -> None:
    app = create_app()
    served = set(app.openapi()["paths"]) | {getattr(route, "path", "") for route in app.routes} | {"/v1/"}
    text = HTTP_DOC.read_text()
    claimed = {p for p in re.findall(r"`(?:GET |POST )?(/(?:v1|v2|metrics|openapi|docs|redoc)[^`\s]*)`", text)}
    stale = sorted(claimed - served)
    assert not stale, f"{HTTP_DOC.name} documents paths the app does not serve: {stale}"


def test_every_task_route_has_request_and_response_examples_that_match_its_schemas() -> None:
    text = HTTP_DOC.read_text()
    problems = []
    for route in all_routes():
        head = f"## `POST {route.path}`"
        if head not in text:
            problems.append(f"{route.path}: no section {head!r}")
            continue
        section = text.split(head, 1)[1].split("\n## ", 1)[0]
        kinds = []
        for block in re.findall(r"```json\n(.*?)```", section, re.S):
            body = json.loads(block)
            kinds.append(_kind((route.request, *route.alternatives), route.response, body))
        if "request" not in kinds or "response" not in kinds:
            problems.append(f"{route.path}: examples validate as {kinds}; need a request and a response")
    assert not problems, f"{HTTP_DOC.name}: {problems}"


def _kind(requests: tuple[type[BaseModel], ...], response: type[BaseModel], body: object) -> str:
    """Which schema a documented example satisfies (neither = a stale example)."""
    for name, model in [*(("request", r) for r in requests), ("response", response)]:
        try:
            model.model_validate(body)
            return name
        except ValidationError:
            pass
    return f"neither: {json.dumps(body)[:80]}"


def test_the_curl_bodies_in_the_readme_and_quickstart_match_their_routes_schemas() -> None:
    routes = {route.path: route for route in all_routes()}
    checked, problems = 0, []
    for doc in (PROJECT_ROOT / "README.md", PROJECT_ROOT / "docs" / "quickstart.md"):
        text = re.sub(r"\s*\\?\n\s*", " ", doc.read_text())  # join continued command lines
        for path, body in re.findall(r"localhost:8000(/v1/[\w/]+) -H '[^']*' -d '([^']*)'", text):
            if path not in routes:
                problems.append(f"{doc.name}: {path} is not a task route")
                continue
            try:
                routes[path].request.model_validate(json.loads(body))
                checked += 1
            except (ValueError, ValidationError) as e:
                problems.append(f"{doc.name}: {path} body {body[:60]}: {e}")
    assert checked >= 8, f"only {checked} curl bodies found in README.md and docs/quickstart.md"
    assert not problems, problems
