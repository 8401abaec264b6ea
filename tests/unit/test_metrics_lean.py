"""The hot path's cheaper metric writes record exactly what prometheus_client's own calls record.

``FastHistogram`` replaces the linear bucket scan with a binary search and ``use_lean_multiprocess_values`` writes
mmap slots directly. Each side runs in a fresh interpreter (the value class is chosen when prometheus_client is
imported with ``PROMETHEUS_MULTIPROC_DIR`` set) and the merged multiprocess exposition is compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from app.metrics import LATENCY_BUCKETS, FastHistogram

# on a bound, between bounds, below the first, beyond the last finite bound (+Inf), zero
AMOUNTS = [0.0, 0.0001, 0.00025, 0.0003, 0.001, 0.00999, 0.01, 0.5, 9.99, 10.0, 11.0, 1e9]

SCRIPT = """
import json, sys
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from app.metrics import LATENCY_BUCKETS, FastHistogram, use_lean_multiprocess_values
lean = sys.argv[1] == "lean"
if lean:
    use_lean_multiprocess_values()
r = CollectorRegistry()
h = Histogram("h", "h", ["m"], buckets=LATENCY_BUCKETS, registry=r).labels("a")
c = Counter("c", "c", ["m"], registry=r).labels("a")
g = Gauge("g", "g", ["m"], registry=r, multiprocess_mode="livesum").labels("a")
observe = FastHistogram(h).observe if lean else h.observe
for x in json.loads(sys.argv[2]):
    observe(x)
    c.inc(x)
    g.set(x)
out = CollectorRegistry()
multiprocess.MultiProcessCollector(out)
print(json.dumps(sorted([s.name, sorted(s.labels.items()), s.value] for f in out.collect() for s in f.samples)))
"""


def _samples(tmp_path: Path, mode: str) -> list[Any]:
    folder = tmp_path / mode
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, json.dumps(AMOUNTS)], env=env, capture_output=True, text=True, check=True
    )
    result: list[Any] = json.loads(done.stdout)
    return result


def test_lean_multiprocess_values_and_fast_histogram_match_prometheus_client(tmp_path: Path) -> None:
    standard, lean = _samples(tmp_path, "standard"), _samples(tmp_path, "lean")
    assert lean == standard
    assert any(name == "h_bucket" and value > 0 for name, _, value in standard), standard


def test_fast_histogram_puts_every_amount_in_the_same_bucket() -> None:
    upstream = Histogram("u", "u", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    fast_child = Histogram("f", "f", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    fast = FastHistogram(fast_child)
    for x in AMOUNTS:
        upstream.observe(x)
        fast.observe(x)
    counts = [[b.get() for b in h._buckets] for h in (upstream, fast_child)]
    assert counts[0] == counts[1]
    assert upstream._sum.get() == fast_child._sum.get()
