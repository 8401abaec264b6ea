"""Locust load profile for ``POST /v1/ads/ctr``: mostly single-candidate calls plus 100-candidate pages.

Rows come from the Criteo sample (``CTR_DATA``) when present, else are synthesized with the same schema.
Fixed seed, bounded run. Example (headless, 60 s, 32 users)::

    python -m locust -f loadtest/locustfile_ctr.py --host http://127.0.0.1:8000 --headless -u 32 -r 32 -t 60s \\
        --csv /tmp/ctr

The SLO check at the end fails the run (exit code 1) when p99 or the error ratio exceed ``CTR_SLO_P99_MS`` /
``CTR_SLO_ERROR_RATIO``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task

from loadtest.harness.criteo import request_rows

DATA = Path(os.environ.get("CTR_DATA", "/work/shared/data/ctr/criteo_kaggle_train_10k.txt"))
SLO_P99_MS = float(os.environ.get("CTR_SLO_P99_MS", "20"))
SLO_ERROR_RATIO = float(os.environ.get("CTR_SLO_ERROR_RATIO", "0.001"))
RNG = random.Random(1234)


def _rows(limit: int = 2000) -> list[dict[str, Any]]:
    if not DATA.is_file():
        return [_synthetic() for _ in range(limit)]
    return request_rows(DATA, limit)


def _synthetic() -> dict[str, Any]:
    row: dict[str, Any] = {f"I{i}": RNG.randint(0, 50) for i in range(1, 14)}
    row.update({f"C{i}": f"{RNG.getrandbits(32):08x}" for i in range(1, 27)})
    return row


ROWS = _rows()


def _body(n: int) -> dict[str, Any]:
    picked = RNG.sample(ROWS, n)
    return {"candidates": [{"ad_id": f"ad-{i}", "features": r} for i, r in enumerate(picked)]}


SINGLE = [_body(1) for _ in range(256)]
PAGES = [_body(100) for _ in range(16)]


class CtrUser(FastHttpUser):
    wait_time = between(0, 0.002)

    @task(10)
    def single_candidate(self) -> None:
        self.client.post("/v1/ads/ctr", json=RNG.choice(SINGLE), name="ctr 1 candidate")

    @task(1)
    def hundred_candidates(self) -> None:
        self.client.post("/v1/ads/ctr", json=RNG.choice(PAGES), name="ctr 100 candidates")


@events.quitting.add_listener
def _check_slo(environment: Any, **_: Any) -> None:
    total = environment.stats.total
    if total.num_requests == 0:
        return
    p99 = total.get_response_time_percentile(0.99)
    ratio = total.num_failures / total.num_requests
    if p99 > SLO_P99_MS or ratio > SLO_ERROR_RATIO:
        print(f"SLO missed: p99 {p99:.1f} ms (limit {SLO_P99_MS}), error ratio {ratio:.4f} (limit {SLO_ERROR_RATIO})")
        environment.process_exit_code = 1
