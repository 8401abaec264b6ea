"""CTR serving benchmark: the service vs a naive per-request FastAPI app vs the bare ONNX session.

Starts both servers as uvicorn subprocesses on one published version, drives ``POST /v1/ads/ctr`` with ``wrk``
(a Lua script sets the body) for single-row and 100-candidate requests at several concurrencies, interleaving
the two servers run by run so background load hits both alike, and prints medians over ``--runs`` runs.
The in-process rows time the same work without HTTP: ``session.run`` alone (the ceiling) and featurizer +
``session.run`` on the rows of ``concurrency`` requests at once. Everything is bounded by ``--duration``.

Run from the repository root::

    python -m loadtest.bench_ctr                        # publishes the test fixture model into a temp repo
    python -m loadtest.bench_ctr --repo model_repo --duration 10 --runs 5 --markdown docs/bench.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "r")
wrk.body = f:read("*a")
f:close()
"""


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")


@contextmanager
def server(args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> Iterator[str]:
    """Run ``python <args>`` with a free APP_PORT/--port (in ``cwd``: another checkout's code); yields its base URL;
    always terminates it."""
    port = _free_port()
    full = [sys.executable, *[a.replace("{port}", str(port)) for a in args]]
    extra = {"PYTHONPATH": str(cwd)} if cwd is not None else {}
    with open(log, "wb") as out:
        proc = subprocess.Popen(full, env={**os.environ, **env, **extra, "APP_PORT": str(port)}, stdout=out,
                                stderr=out, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, script: Path, concurrency: int, duration_s: int) -> Result:
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration_s}s", "--timeout", "5s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration_s + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    return Result(rps, p50, p99, errors)


def median(results: list[Result]) -> Result:
    return Result(
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
    )


def in_process(version_dir: Path, bodies: dict[int, dict[str, Any]], concurrency: int, seconds: float) -> dict[str, Result]:
    """Time ``session.run`` alone and featurizer + run on the rows of ``concurrency`` requests at once."""
    import onnxruntime as ort

    from app.tasks.ctr import CtrFeaturizer

    featurizer = CtrFeaturizer.load(version_dir / "preprocess.json")
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(version_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
    out = {}
    for n, body in bodies.items():
        rows = [{**body["context"], **c["features"]} for c in body["candidates"]] * concurrency
        x = featurizer.transform_records(rows)
        out[f"onnx session only, {n} cand"] = _time(lambda: session.run(["pctr"], x), concurrency, seconds)
        out[f"featurizer + session, {n} cand"] = _time(
            lambda: session.run(["pctr"], featurizer.transform_records(rows)), concurrency, seconds
        )
    return out


def _time(fn: Any, requests_per_call: int, seconds: float) -> Result:
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1e3  # noqa: E731
    return Result(requests_per_call * len(times) / sum(times), p(0.5), p(0.99))


def prepare(repo: Path | None, workdir: Path) -> tuple[Path, Path]:
    """The model repo (published from the test fixture unless given) and the version folder to benchmark."""
    if repo is None:
        from tests.fixtures.ctr_model import publish_ctr_version

        repo = workdir / "model_repo"
        repo.mkdir()
        publish_ctr_version(repo, seed=0)
    from app.repository import list_versions

    versions = list_versions(repo, "ad-ctr")
    if not versions:
        raise SystemExit(f"{repo} has no published ad-ctr version")
    return repo, repo / "ad-ctr" / str(versions[-1])


def bodies_for(candidates: list[int]) -> dict[int, dict[str, Any]]:
    from tests.fixtures.ctr_model import raw_records

    records = raw_records(max(candidates))
    return {n: {"context": {}, "candidates": [{"ad_id": f"ad{i}", "features": r} for i, r in enumerate(records[:n])]} for n in candidates}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_ctr", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, help="existing model repository (default: publish the fixture model)")
    p.add_argument("--duration", type=int, default=5, help="whole seconds per wrk run")
    p.add_argument("--runs", type=int, default=3, help="runs per cell; the table shows medians")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--candidates", default="1,100")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    p.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra setting for the service, e.g. APP_MAX_QUEUE_DELAY_US=2000 (repeatable)")
    p.add_argument("--compare-tree", type=Path, metavar="DIR",
                   help="also run the service from another checkout (e.g. `git worktree add /tmp/before <commit>`), "
                   "interleaved run by run with this one: before/after figures from one machine state")
    p.add_argument("--no-naive", action="store_true", help="skip the per-request baseline server")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    candidates = [int(c) for c in args.candidates.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-ctr-") as tmp:
        work = Path(tmp)
        repo, version_dir = prepare(args.repo, work)
        bodies = bodies_for(candidates)
        scripts = {}
        for n, body in bodies.items():
            (work / f"body{n}.json").write_text(json.dumps(body))
            scripts[n] = work / f"post{n}.lua"
            scripts[n].write_text(LUA.format(body=work / f"body{n}.json"))
        rows = measure(args, repo, version_dir, work, scripts, concurrencies)
        for c in concurrencies:
            for name, r in in_process(version_dir, bodies, c, min(args.duration, 3.0)).items():
                rows.append((f"in-process: {name}", c, r))
    table = render(rows, args)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


def measure(args: Any, repo: Path, version_dir: Path, work: Path, scripts: dict[int, Path], concurrencies: list[int]) -> list[tuple[str, int, Result]]:
    service_env = {"MODEL_REPO": str(repo), "APP_LOG_LEVEL": "warning"}
    service_env.update(kv.split("=", 1) for kv in args.service_env)
    naive_args = ["-m", "loadtest.naive_app", "--version-dir", str(version_dir), "--port", "{port}"]
    out: list[tuple[str, int, Result]] = []
    labels = {"service": "service (batched)", "naive": "naive (per-request run)",
              "compare": f"service @ {args.compare_tree} (batched)"}
    with ExitStack() as stack:
        urls = {"service": stack.enter_context(server(["-m", "app"], service_env, work / "service.log"))}
        if not args.no_naive:
            urls["naive"] = stack.enter_context(server(naive_args, {}, work / "naive.log"))
        if args.compare_tree is not None:
            urls["compare"] = stack.enter_context(
                server(["-m", "app"], service_env, work / "compare.log", cwd=args.compare_tree.resolve()))
        for n, script in scripts.items():
            for c in concurrencies:
                per: dict[str, list[Result]] = {name: [] for name in urls}
                for _ in range(args.runs):  # interleaved so background load affects all alike
                    for name, url in urls.items():
                        per[name].append(run_wrk(url + "/v1/ads/ctr", script, c, args.duration))
                for name, results in per.items():
                    out.append((f"{labels[name]}, {n} cand", c, median(results)))
                print(f"  done: {n} candidates, concurrency {c}", file=sys.stderr)
    return out


def render(rows: list[tuple[str, int, Result]], args: Any) -> str:
    lines = [
        f"duration {args.duration:g}s x {args.runs} runs per cell (medians), wrk -t1, concurrency = open connections"
        + (f"; service env {' '.join(args.service_env)}" if args.service_env else ""),
        "",
        "| target | concurrency | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, c, r in rows:
        lines.append(f"| {name} | {c} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
