"""Defect 2: caller-chosen model names never become metric labels, so /metrics stays small."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from tests.fixtures.servers import ServerFactory
from tests.reliability.conftest import ready, start


def test_unknown_model_names_are_one_label(repo: Path, start_server: ServerFactory) -> None:
    server = start(start_server, repo)
    ready(server)
    before = len(server.get("/metrics").content)
    names = [f"m{secrets.token_hex(6)}" for _ in range(300)]
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for i, name in enumerate(names):  # errors raised before the model lookup (body, header, version)
            kind = i % 3
            if kind == 0:
                r = c.post(f"/v2/models/{name}/infer", content=b"{not json")
            elif kind == 1:
                r = c.post(f"/v2/models/{name}/infer", content=b"{}", headers={"timeout-ms": "x"})
            else:
                r = c.post(f"/v2/models/{name}/versions/x/infer", content=b"{}")
            assert 400 <= r.status_code < 500, r.text
        text = c.get("/metrics").text
    assert not any(name in text for name in names)
    assert 'model="_unknown_"' in text
    assert len(text) < before + 20_000, (before, len(text))  # a handful of new series, not 300
