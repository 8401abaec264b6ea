"""The adaptive in-progress limit on a real server: it learns the no-load latency from light traffic, refuses
(503 ``overloaded``) once many heavy requests slow answers down, and admits again as soon as the worker is idle.

The queue-time budget is switched off so that the adaptive limit is the only rule that can refuse."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.fixtures.servers import ServerFactory
from tests.reliability.conftest import client, ctr_body, metric, ready, start


def test_adaptive_limit_refuses_under_overload_and_admits_when_idle(repo: Path, start_server: ServerFactory) -> None:
    server = start(start_server, repo, APP_ADAPTIVE_IN_FLIGHT="true", APP_QUEUE_BUDGET_MS="")
    ready(server)
    light, heavy = ctr_body(1), ctr_body(400)
    with client(server) as c:
        for _ in range(64):  # no-load latency: one small request at a time
            r = c.post("/v1/ads/ctr", json=light)
            assert r.status_code == 200, r.text

    def hammer(_: int) -> list[tuple[int, str]]:
        out = []
        with httpx.Client(base_url=server.url, timeout=60) as hc:
            for _ in range(25):
                r = hc.post("/v1/ads/ctr", json=heavy)
                out.append((r.status_code, r.json()["error"]["code"] if r.status_code != 200 else ""))
        return out

    with ThreadPoolExecutor(16) as pool:  # 16 clients of 400-candidate requests: answers ~30x the no-load time
        results = [x for batch in pool.map(hammer, range(16)) for x in batch]
    statuses = sorted({s for s, _ in results})
    refused = [code for s, code in results if s == 503]
    assert set(statuses) == {200, 503}, f"expected answers and refusals, saw statuses {statuses}"
    assert refused and set(refused) == {"overloaded"}, f"503 codes {set(refused)}; statuses {statuses}"
    assert metric(server, "inference_admission_refusals_total") >= len(refused), "refusals must be counted"
    limit = metric(server, "inference_in_flight_limit", model="ad-ctr")
    assert 1 <= limit < 16, f"the limit learnt under overload ({limit}) should be below its start (16)"
    with client(server) as c:  # idle again: a lone request is admitted whatever the limit learnt under load
        for _ in range(5):
            r = c.post("/v1/ads/ctr", json=heavy)
            assert r.status_code == 200, f"an idle worker refused: {r.status_code} {r.text}"
