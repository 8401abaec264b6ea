"""``python -m loadtest.limits`` on the CTR fixture for a couple of seconds: a real server, real wrk, and a row
per endpoint with the end-to-end throughput as a fraction of the runtime-only limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ctr_row_compares_the_service_with_its_runtime(ctr_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "limits.json"
    cmd = [sys.executable, "-m", "loadtest.limits", "--repo", str(ctr_repo), "--endpoints", "ctr", "--seconds", "1",
           "--rounds", "1", "--connections", "4", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    (row,) = json.loads(out.read_text())
    assert row["endpoint"] == "ctr" and row["shape"] == "100 candidates", row
    assert row["runtime_rps"] > 0 and row["e2e_rps"] > 0, row
    # a loaded host can make admission refuse a few requests (503 overloaded): the service must still answer most
    assert row["errors"] <= row["e2e_rps"], f"more refusals than answers per second of the run: {row}"
    assert row["fraction_of_runtime"] == row["e2e_rps"] / row["runtime_rps"], row
    assert "| ctr | 100 candidates |" in proc.stdout and "load average" in proc.stdout, proc.stdout
