"""The peer benchmark's harness parses real wrk output and builds its table (the benchmark itself is not a test)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.peers import measure
from loadtest.peers.measure import Row, Sample, WrkResult, parse_wrk, render, summarize, write_section
from tests.fixtures.servers import wait_until

DATA = Path(__file__).parent / "data"


def test_parses_captured_wrk_output() -> None:
    """This service under 32 connections, shedding a few requests with 503 (captured by the harness's wrk call)."""
    r = parse_wrk((DATA / "wrk_latency_service.txt").read_text())
    assert r == WrkResult(rps=2410.71, p50_ms=13.35, p99_ms=40.85, requests=24159, non_2xx=362, socket_errors=0)


def test_counts_non_2xx_and_socket_errors() -> None:
    """``python -m http.server`` answering POST with 501, 400 connections, 1 s timeout: both error kinds."""
    r = parse_wrk((DATA / "wrk_latency_errors.txt").read_text())
    assert (r.non_2xx, r.socket_errors, r.errors) == (5550, 5, 5555)
    assert r.p50_ms == pytest.approx(1.77) and r.p99_ms == pytest.approx(45.97) and r.rps == pytest.approx(1771.74)


def test_unparseable_output_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="Requests/sec"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_medians_and_table_with_ratio_column() -> None:
    def s(rps: float, p99: float, cores: float) -> Sample:
        return Sample(WrkResult(rps, 1.0, p99, int(rps * 10), non_2xx=1), cores, 100.0)

    rows = [summarize("us", [s(4000, 12, 1.0), s(5000, 10, 0.9), s(100, 90, 1.0)]),
            summarize("them", [s(12000, 5, 1.4), s(13000, 4, 1.5), s(14000, 6, 1.3)])]  # fmt: skip
    assert rows[0].good_rps == pytest.approx(3999.9)  # goodput: the 1 non-2xx answer of 40,000 is not throughput
    assert dataclasses.replace(rows[0], good_rps=0.0) == Row("us", 4000, 1.0, 12, 1.0, 100.0, 3, 0, 3)
    table = render(rows, "header", reference="us")
    assert "| us | 4,000 | 1.00 | 12.0 | 1.00 | 250 | 100 | 3 / 0 | 1.00 |" in table
    assert "| them | 13,000 | 1.00 | 5.0 | 1.40 | 108 | 100 | 3 / 0 | 3.25 |" in table


def test_docs_section_is_replaced_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text("# Bench\n\nintro\n")
    write_section(doc, "first")
    write_section(doc, "second")
    text = doc.read_text()
    assert text.count(measure.BEGIN) == 1 and "second" in text and "first" not in text
    assert text.startswith("# Bench\n\nintro\n")


def test_process_tree_cpu_covers_children() -> None:
    """A parent that only waits + a child that burns 0.5 s of CPU: the tree's CPU time includes the child's."""
    child = "import sys,time\nt=time.process_time()\nwhile time.process_time()-t<0.5: pass\nsys.stdin.read()"
    parent = f"import subprocess,sys; subprocess.run([sys.executable, '-c', {child!r}])"
    proc = subprocess.Popen([sys.executable, "-c", parent], stdin=subprocess.PIPE)
    try:
        wait_until(lambda: measure.cpu_seconds(measure.process_tree(proc.pid)) >= 0.45, 60, "the child's CPU time")
        tree = measure.process_tree(proc.pid)
        assert len(tree) == 2 and tree[0] == proc.pid
        assert measure.cpu_seconds([proc.pid]) < 0.3  # so the child's time was counted
        assert measure.rss_mib(tree) > measure.rss_mib([proc.pid]) > 1
    finally:
        proc.communicate(b"")
