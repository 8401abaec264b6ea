"""ANN retrieval: the gated candidate rows, and an ANN version served with exclusions and live availability."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from compress.pipeline import publish_candidate
from tests.fixtures.compress_run import CompressRun
from tests.fixtures.servers import ServerFactory, ServerProcess, wait_until

KINDS = ("ann_ivf_flat", "ann_ivf_pq_fastscan", "ann_hnsw")


def _report(run: CompressRun) -> dict[str, Any]:
    return dict(json.loads((run.repo / run.cfg.model.name / "2" / "report.json").read_text()))


def test_every_ann_kind_is_gated_and_listed_with_its_overlap(rec_compress_run: CompressRun) -> None:
    rows = {c["name"]: c for c in _report(rec_compress_run)["candidates"]}
    ref = rows["fp32"]["metrics"]
    for kind in KINDS:
        row = rows.get(kind)
        assert row is not None, f"{kind} missing from the report: {sorted(rows)}"
        assert row["gate"] is not None and row["status"] in ("passed", "failed"), row
        m = row["metrics"]
        assert 0.0 <= m["overlap@10"] <= 1.0, m
        passes = m["recall@10"] >= 0.99 * ref["recall@10"] and m["ndcg@10"] >= 0.99 * ref["ndcg@10"]
        assert row["gate"]["passed"] == passes, (kind, m, ref, row["gate"])
        assert row["recipe"]["index"]["bytes"] > 0 and "factory" in row["recipe"]["index"], row["recipe"]
    assert rows["ann_ivf_flat"]["status"] == "passed", rows["ann_ivf_flat"]


def _ids(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [it["item_id"] for it in r.json()["items"]]


def test_ann_version_answers_exactly_k_and_never_an_item_marked_unavailable(
    rec_compress_run: CompressRun, start_server: ServerFactory, tmp_path: Path
) -> None:
    run = rec_compress_run
    repo = tmp_path / "repo"
    version = publish_candidate(run.cfg, repo, run.result, "ann_ivf_pq_fastscan")
    man = json.loads((repo / run.cfg.model.name / str(version) / "manifest.json").read_text())
    assert {f["role"] for f in man["aux_files"]} >= {"ann_index", "ann_items"}, man["aux_files"]
    env = {"APP_TASK_MODELS": json.dumps({"recommend": run.cfg.model.name}), "APP_WORKERS": "2"}
    server: ServerProcess = start_server(repo, **env)
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "the ANN version to be ready")
    body = {"history": ["85123A", "71053", "22423"], "k": 20}
    first = _ids(server.post("/v1/recommend", json=body))
    assert len(first) == 20 and len(set(first)) == 20, first
    excl = _ids(server.post("/v1/recommend", json={**body, "exclude": first[:10]}))
    assert len(excl) == 20 and not set(excl) & set(first[:10]), excl
    # concurrent load while the top items are marked unavailable: no answer issued after the ack contains them
    stop, answered = threading.Event(), [0]
    bad: list[tuple[list[str], str]] = []
    acked_at: list[float] = []
    marked = first[:5] + excl[:5]

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                t0 = time.monotonic()
                r = c.post("/v1/recommend", json=body)
                if r.status_code != 200:
                    continue
                got = [it["item_id"] for it in r.json()["items"]]
                answered[0] += 1
                if acked_at and t0 > acked_at[0] and set(got) & set(marked):
                    bad.append((got, f"{t0 - acked_at[0]:.3f} s after the ack"))
                if acked_at and t0 > acked_at[0] and len(got) != 20:
                    bad.append((got, "not k"))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: answered[0] >= 20, 60, "load to be running")
    r = server.post("/v1/catalogue/availability", json={"items": marked, "available": False})
    acked_at.append(time.monotonic())
    assert r.status_code == 200 and r.json()["acknowledged"] is True, r.text
    before = answered[0]
    wait_until(lambda: answered[0] >= before + 40, 60, "answers after the mark")
    stop.set()
    for t in threads:
        t.join(30)
    assert not bad, f"answers after the ack broke the filter: {bad[:3]}"
    back = server.post("/v1/catalogue/availability", json={"items": marked, "available": True})
    assert back.status_code == 200 and back.json()["unavailable_items"] == 0, back.text
    assert _ids(server.post("/v1/recommend", json=body)) == first, "marking items available again restores them"
