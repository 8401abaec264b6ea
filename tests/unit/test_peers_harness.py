"""The load-test harness parses real wrk output, spawns and stops servers, reads process-tree CPU, and the peer
benchmark builds its table from it (the benchmarks themselves are not tests)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.harness import cpu, procs
from loadtest.harness import wrk as harness_wrk
from loadtest.harness.wrk import WrkResult
from loadtest.harness.wrk import parse as parse_wrk
from loadtest.peers import measure
from loadtest.peers.measure import Row, Sample, render, summarize, write_section
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
        wait_until(lambda: cpu.cpu_seconds(cpu.process_tree(proc.pid)) >= 0.45, 60, "the child's CPU time")
        tree = cpu.process_tree(proc.pid)
        assert len(tree) == 2 and tree[0].pid == proc.pid, tree
        parent_only = cpu.cpu_seconds(tree[:1])
        assert parent_only < 0.3, parent_only  # so the child's time was counted
        assert cpu.rss_mib(tree) > cpu.rss_mib(tree[:1]) > 1
    finally:
        proc.communicate(b"")


def test_spawn_waits_for_readiness_and_stop_ends_the_process(tmp_path: Path) -> None:
    """A real HTTP server: spawn returns once it answers 200, stop() ends it (and its group)."""
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}/"
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    proc = procs.spawn(argv, ready=lambda: procs.http_ok(url), what="http.server", log=tmp_path / "log",
                       new_session=True)  # fmt: skip
    try:
        assert procs.http_ok(url), "spawn returned before the server answered"
    finally:
        procs.stop(proc, group=True)
    assert proc.poll() is not None, "the server still runs after stop()"
    assert not procs.http_ok(url)


def test_a_server_that_exits_fails_fast_with_its_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('bad config: APP_X'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"exited with 3(.|\n)*bad config: APP_X"):
        procs.spawn(argv, ready=lambda: False, what="a server", log=tmp_path / "log", timeout_s=60)


def test_post_script_drives_wrk_against_a_real_server(tmp_path: Path) -> None:
    """The POST script and the parser against ``http.server`` (which answers POST with 501: all non-2xx)."""
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}/"
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    with procs.running(argv, ready=lambda: procs.http_ok(url), what="http.server", log=tmp_path / "log"):
        script = harness_wrk.post_script(tmp_path / "post.lua", {"x": 1}, {"timeout-ms": "20"})
        r = harness_wrk.run(url, script, connections=1, duration_s=1)
    assert r.requests > 0 and r.non_2xx == r.requests, r
    assert '"timeout-ms"' in script.read_text() and (tmp_path / "post.json").read_text() == '{"x": 1}'


def test_triton_ort_backend_folder_links_the_renamed_server_library(tmp_path: Path) -> None:
    """The PyTriton wheel renames libtritonserver.so; the C++ backend links the plain name, so ``install`` puts a
    link to the renamed file beside the backend (and the backend's own files as links)."""
    from loadtest.peers.triton_ort import BACKEND_LIB, install

    built, libs = tmp_path / "built", tmp_path / "libs"
    built.mkdir()
    libs.mkdir()
    (built / BACKEND_LIB).write_bytes(b"backend")
    (libs / "libtritonserver-717102f0.so").write_bytes(b"server")
    target = install(tmp_path / "dist", built, libs)
    assert (target / BACKEND_LIB).read_bytes() == b"backend", sorted(p.name for p in target.iterdir())
    assert (target / "libtritonserver.so").resolve() == (libs / "libtritonserver-717102f0.so").resolve()
    install(tmp_path / "dist", built, libs)  # a second run (cached build) replaces its links, no error


def test_triton_ort_build_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    from loadtest.peers.triton_ort import BuildError, fetch_header, install, ort_library

    with pytest.raises(BuildError, match="REPO@REV:PATH"):
        fetch_header("https://example.invalid/onnxruntime", tmp_path / "h.h", tmp_path / "log")
    with pytest.raises(BuildError, match="libonnxruntime.so"):
        ort_library(tmp_path)
    (tmp_path / "b").mkdir()
    with pytest.raises(BuildError, match="libtritonserver"):
        install(tmp_path / "dist", tmp_path / "b", tmp_path)


def test_peer_json_rows_carry_label_and_rps() -> None:
    from loadtest.peers.__main__ import _rows

    smp = Sample(WrkResult(rps=1000.0, p50_ms=1.0, p99_ms=2.0, requests=10000, non_2xx=0), cores=0.5, rss_mib=100.0)
    rows = _rows({"Triton": [smp, smp], "shopinfer (python -m app)": [smp]},
                 {"Triton": "triton-ort", "shopinfer (python -m app)": "shopinfer"})  # fmt: skip
    assert [(r["label"], r["round"]) for r in rows] == [("triton-ort", 1), ("triton-ort", 2), ("shopinfer", 1)]
    assert rows[0]["rps"] == 1000.0 and rows[0]["cpu_us_per_req"] == pytest.approx(500.0), rows[0]
