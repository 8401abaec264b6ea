"""``python -m loadtest.limits`` for search and recommend on the session's published models: a real server,
real wrk, one row per endpoint with the end-to-end throughput as a fraction of the runtime-only limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.compress_run import CompressRun

ROOT = Path(__file__).resolve().parents[2]


def test_search_and_recommend_rows(
    search_bi_compress_run: CompressRun, rec_compress_run: CompressRun, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    rec = rec_compress_run.cfg.model.name
    search = search_bi_compress_run.cfg.model.name
    (repo / rec).symlink_to(rec_compress_run.repo / rec)
    (repo / search).symlink_to(search_bi_compress_run.repo / search)
    out = tmp_path / "limits.json"
    cmd = [sys.executable, "-m", "loadtest.limits", "--repo", str(repo), "--endpoints", "search", "recommend",
           "--model", f"recommend={rec}", "--model", f"search={search}", "--seconds", "1", "--rounds", "1",
           "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    rows = {r["endpoint"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"search", "recommend"}, rows
    assert rows["search"]["shape"] == "50 catalogue candidates", rows["search"]
    assert rows["recommend"]["shape"] == "a known customer", rows["recommend"]
    for r in rows.values():
        assert r["runtime_rps"] > 0 and r["e2e_rps"] > 0 and r["errors"] == 0, r
        assert r["fraction_of_runtime"] == r["e2e_rps"] / r["runtime_rps"], r
    assert "| search | 50 catalogue candidates |" in proc.stdout, proc.stdout
