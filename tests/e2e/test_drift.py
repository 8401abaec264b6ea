"""Drift on a real server: a published CTR version with a drift reference, held-out traffic, then shifted traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.ctr_model import publish_ctr_version, raw_records, with_drift_reference
from tests.fixtures.servers import ServerFactory, ServerProcess, wait_until


def _psi(server: ServerProcess) -> dict[str, float]:
    text = server.get("/metrics").text
    return {
        s.labels["feature"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == "model_drift_psi"
        for s in f.samples
        if s.labels.get("model") == "ad-ctr"
    }


def _score(server: ServerProcess, records: list[dict[str, Any]]) -> None:
    body = {"candidates": [{"ad_id": f"a{i}", "features": r} for i, r in enumerate(records)]}
    r = server.post("/v1/ads/ctr", json=body)
    assert r.status_code == 200, server.saw(r)


def test_held_out_traffic_is_stable_and_a_scaled_field_drifts_alone(
    tmp_path: Path, start_server: ServerFactory
) -> None:
    repo = tmp_path / "repo"
    publish_ctr_version(repo, seed=0, tweak=with_drift_reference)  # reference: held-out rows 8000-8999
    server = start_server(
        repo,
        APP_WORKERS="1",
        APP_DRIFT_SAMPLE_RATE="1",
        APP_DRIFT_ROWS_PER_REQUEST="100",
        APP_DRIFT_WINDOW="1000",
        APP_DRIFT_MIN_ROWS="500",
    )
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "readiness")
    live = raw_records(1000, 9000)  # other held-out rows: the same distribution
    for i in range(0, 1000, 100):
        _score(server, live[i : i + 100])

    def settled(rows: list[dict[str, Any]]) -> dict[str, float]:
        _score(server, rows)  # gauges refresh at most once a second, on an observation
        return _psi(server)

    wait_until(lambda: len(settled(live[:1])) == 39, 30, "a PSI gauge per observed field")
    calm = _psi(server)
    assert max(calm.values()) < 0.15, f"held-out traffic should look like the reference: {sorted(calm.items())}"

    shifted = [{**r, "I5": r["I5"] * 10} if "I5" in r else r for r in raw_records(1000, 9000)]
    for i in range(0, 1000, 100):
        _score(server, shifted[i : i + 100])
    wait_until(lambda: settled(shifted[:1]).get("I5", 0.0) > 0.25, 30, "I5 to drift")
    psi = _psi(server)
    others = {k: v for k, v in psi.items() if k != "I5"}
    assert max(others.values()) < 0.15, f"only I5 was scaled: {sorted(psi.items())}"
