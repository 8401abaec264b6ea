"""Issue 8: SIGTERM during traffic: requests in flight complete, later ones are refused cleanly, none is lost."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx

from tests.fixtures.servers import ServerFactory
from tests.reliability.conftest import ctr_body, metric, ready, start


async def test_sigterm_drains_in_flight_requests(repo: Path, start_server: ServerFactory) -> None:
    # a 300 ms batching window holds requests in the queue, so they are provably in flight at SIGTERM
    server = start(start_server, repo, APP_MAX_QUEUE_DELAY_US="300000", APP_MAX_BATCH_ROWS="100000")
    ready(server)
    body = ctr_body(10)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        in_flight = [asyncio.create_task(c.post("/v1/ads/ctr", json=body)) for _ in range(8)]
        for _ in range(200):  # poll the queue gauge until all 8 items are queued (bounded)
            if metric(server, "inference_queue_rows", model="ad-ctr") == 80:
                break
            await asyncio.sleep(0.01)
        assert metric(server, "inference_queue_rows", model="ad-ctr") == 80
        server.proc.send_signal(signal.SIGTERM)
        after: list[str] = []
        async with httpx.AsyncClient(
            base_url=server.url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
        ) as fresh:
            while server.proc.poll() is None and len(after) < 200:
                try:
                    r = await fresh.post("/v1/ads/ctr", json=body)
                    after.append(str(r.status_code))
                except httpx.ConnectError:
                    after.append("refused")
                except httpx.HTTPError as e:  # closed before any response byte: never processed
                    after.append(type(e).__name__)
                await asyncio.sleep(0.01)
        done = await asyncio.gather(*in_flight)
    assert [r.status_code for r in done] == [200] * 8, [r.text for r in done]
    assert all(len(r.json()["scores"]) == 10 for r in done), [r.text[:300] for r in done]
    assert set(after) <= {"200", "503", "refused", "RemoteProtocolError", "ReadError"}, after
    assert "refused" in after or "503" in after, after  # new work was turned away once draining began
    assert server.proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    assert "all versions drained and unloaded" in server.log.read_text()
