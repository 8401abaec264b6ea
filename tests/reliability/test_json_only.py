"""JSON endpoints take only JSON: a cross-origin page can post ``text/plain``, a form or an untyped blob without
a CORS preflight, so those are refused (415 ``unsupported_media_type``) before the body is read; KServe v2
inference keeps its binary tensor extension (any content type, ``Inference-Header-Content-Length``)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.servers import ServerFactory
from tests.reliability.conftest import ctr_body, ready, start
from tests.reliability.test_bad_inputs import v2_body

EVENT = {"user_id": "u1", "item_id": "85123A", "kind": "view"}


def test_write_endpoints_refuse_non_json_content_types(repo: Path, start_server: ServerFactory) -> None:
    server = start(start_server, repo)
    ready(server)
    for path, body in (("/v1/events", EVENT), ("/v1/ads/ctr", ctr_body(2))):
        raw = json.dumps(body).encode()
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            headers = {"content-type": ctype} if ctype else {}
            r = server.post(path, content=raw, headers=headers)
            assert r.status_code == 415, (path, ctype, r.status_code, r.text)
            assert r.json()["error"]["code"] == "unsupported_media_type", r.text
    for ctype in ("application/json", "application/json; charset=utf-8", "application/vnd.shop+json"):
        r = server.post("/v1/ads/ctr", content=json.dumps(ctr_body(2)).encode(), headers={"content-type": ctype})
        assert r.status_code == 200, (ctype, r.text)
    r = server.post("/v1/events", json=EVENT)
    assert r.status_code != 415, r.text
    # v2 inference: JSON without a content type, and the binary extension's octet-stream, still served
    doc = json.dumps(v2_body([[2] * 26])).encode()
    assert server.post("/v2/models/ad-ctr/infer", content=doc).status_code == 200
    r = server.post(
        "/v2/models/ad-ctr/infer",
        content=doc,
        headers={"content-type": "application/octet-stream", "inference-header-content-length": str(len(doc))},
    )
    assert r.status_code == 200, r.text
