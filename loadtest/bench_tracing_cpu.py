"""CPU (or instructions) that tracing adds to a 1-row CTR request, measured in ONE process so that the spread
between server processes and the load on a shared machine cannot pose as a tracing cost.

The real app (lifespan, model, batcher, hot path) is driven through ASGI by ``--concurrency`` coroutines, a task
per request as uvicorn does (no sockets, no HTTP parser: both are the same with tracing on or off). Short blocks of
``--requests`` requests run with tracing off, off again (an A/A pair: the noise floor of the method), and on at
each ``--ratios`` sampling ratio, the order rotated every run. Each traced variant has its own provider for the
whole run, built as ``APP_TRACING_ENABLED`` builds it (batch span processor, OTLP/HTTP to a receiver in another
process); a traced block ends with a flush inside the measured part, so its spans' export is charged to it (one
export per block: more often than the batch processor's 512 spans or 5 s, so a low ratio's row carries more
per-export overhead than a server does). The processors' timer is set past the run (``OTEL_BSP_SCHEDULE_DELAY``)
so that the flush is a block's only export: under callgrind a block lasts about 50x longer, and the 5 s timer
would export a few spans at a time many times a block, each export with about 0.5 ms of HTTP-client CPU, a cost
a server pays once per 5 s whatever its request rate (and one that grew with the machine's load, as a loaded
machine stretches a block further). The admission budget and default deadline are off, so that a slow
machine cannot turn requests into refusals.

A block's cost is the process CPU time (every thread: event loop, batch worker, ONNX Runtime, span exporter) per
request, or with ``--instructions`` the instructions callgrind counts (``valgrind`` must be installed; about 50x
slower, and independent of the machine's load); the table gives the medians over runs, and of the per-run
difference to the "off" block of the same run.

Run from the repository root::

    python -m loadtest.bench_tracing_cpu --runs 9 --requests 2000
    python -m loadtest.bench_tracing_cpu --instructions --runs 3 --requests 1000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.bench_ctr import bodies_for, prepare
from loadtest.harness.procs import free_port, http_ok, running

OFF, AGAIN = "tracing off", "tracing off (A/A)"
BLOCK = "shopinfer-block"  # the description of a block's callgrind dump


def _scope(path: str, body: bytes) -> dict[str, Any]:
    """What uvicorn hands the app for a keep-alive ``POST`` from wrk."""
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip


async def _block(app: Any, path: str, body: bytes, requests: int, concurrency: int) -> None:
    """``requests`` requests, ``concurrency`` at a time; every answer must be a 200."""
    left = requests
    statuses: list[int] = []
    bodies: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        elif message["type"] == "http.response.body" and statuses[-1] != 200:
            bodies.append(message.get("body", b""))

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await asyncio.create_task(app(_scope(path, body), receive, send))  # a task per request, as uvicorn

    await asyncio.gather(*(client() for _ in range(concurrency)))
    bad = [s for s in statuses if s != 200]
    if bad or len(statuses) != requests:
        raise RuntimeError(f"{len(statuses)} answers for {requests} requests, non-200: {bad[:5]} {bodies[:1]}")


async def _measure(
    args: argparse.Namespace, repo: Path, endpoint: str
) -> tuple[dict[str, list[float]], list[str], dict[str, int]]:
    """CPU µs per request of every block, by variant; the variants in the order the blocks ran; cyclic GC runs
    (all generations) by variant."""
    from asgi_lifespan import LifespanManager

    from app import tracing
    from app.main import create_app
    from app.settings import Settings

    # no queue budget, no default deadline: a loaded machine (or callgrind, 50x slower) must not turn requests into
    # refusals, which would change the path being measured
    settings = Settings(
        model_repo=repo, grpc_enabled=False, log_level="warning", queue_budget_ms=None, default_timeout_ms=None
    )
    app = create_app(settings)
    path, body = "/v1/ads/ctr", json.dumps(bodies_for([1])[1]).encode()
    # one provider per traced variant for the whole run, as in a traced server (its exporter keeps its connection)
    variants: dict[str, tuple[Any, float]] = {OFF: (None, 0.0), AGAIN: (None, 0.0)}
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = str(24 * 3600 * 1000)  # exports only at a block's flush (docstring)
    for ratio in args.ratios:
        variants[f"tracing on, {ratio:.0%} sampled"] = (tracing.otlp_provider("shopinfer-bench", endpoint), ratio)
    per: dict[str, list[float]] = {name: [] for name in variants}
    collections = dict.fromkeys(variants, 0)
    try:
        async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60):
            await _until_serving(app, path, body)
            for provider, ratio in variants.values():  # warm-up: first-call paths, each exporter's connection
                await _run(app, path, body, args, provider, ratio, counted=False)
            gc.freeze()  # as the registry does after a load: the warm-up's long-lived objects are not rescanned
            if args.inside_callgrind:
                _callgrind("--instr=on")
            names, order = list(variants), []
            for r in range(args.runs):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    gc0 = _gc_runs()
                    per[name].append(await _run(app, path, body, args, *variants[name]))
                    collections[name] += _gc_runs() - gc0
                    order.append(name)
                print(f"run {r + 1}/{args.runs}", file=sys.stderr, flush=True)
    finally:
        for provider, _ in variants.values():
            if provider is not None:
                provider.shutdown()
    return per, order, collections


def _gc_runs() -> int:
    return sum(generation["collections"] for generation in gc.get_stats())


async def _until_serving(app: Any, path: str, body: bytes, timeout_s: float = 120) -> None:
    """Poll one request until the model answers (it loads in the background after startup)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await _block(app, path, body, 1, 1)
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _run(
    app: Any, path: str, body: bytes, args: argparse.Namespace, provider: Any, ratio: float, counted: bool = True
) -> float:
    """CPU µs per request of one block (under ``--instructions``: 0, its count is dumped by callgrind instead);
    ``provider`` None: tracing off (as with the setting off), else traced at ``ratio`` with that provider."""
    from app import tracing

    if provider is not None:
        tracing.install(provider, ratio)
    try:
        callgrind = args.inside_callgrind and counted
        if callgrind:
            _callgrind("--zero")
        c0 = time.process_time()
        await _block(app, path, body, args.requests, args.concurrency)
        if provider is not None:
            tracing.flush()  # this block's spans are exported on its clock
        spent = time.process_time() - c0
        if callgrind:
            _callgrind(f"--dump={BLOCK}")
            return 0.0
        return spent / args.requests * 1e6
    finally:
        if provider is not None:
            tracing.uninstall()


def _callgrind(command: str) -> None:
    """Tell the callgrind running this process to zero or dump its counters (it acts before this returns)."""
    subprocess.run(["callgrind_control", command, str(os.getpid())], check=True, capture_output=True)


def _instructions(args: argparse.Namespace, argv: list[str], outdir: Path) -> dict[str, list[float]]:
    """Rerun this benchmark under callgrind and read the instructions of every block from its dumps (in order:
    one per block, the variants in the order the inner run printed)."""
    inner = [sys.executable, "-m", "loadtest.bench_tracing_cpu", *argv, "--inside-callgrind"]
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={outdir}/cg.%p", *inner]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    order: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    dumps = sorted(
        (f for f in outdir.glob("cg.*.*") if f"desc: Trigger: dump {BLOCK}\n" in f.read_text()[:4000]),
        key=lambda f: int(f.suffix[1:]),
    )
    if len(dumps) != len(order):
        raise RuntimeError(f"{len(dumps)} callgrind dumps for {len(order)} blocks: {sorted(outdir.iterdir())}")
    per: dict[str, list[float]] = {}
    for name, dump in zip(order, dumps, strict=True):
        totals = next(line for line in dump.read_text().splitlines() if line.startswith("totals:"))
        per.setdefault(name, []).append(int(totals.split()[1]) / args.requests / 1e3)
    return per


def _ratios(text: str) -> list[float]:
    ratios = [float(r) for r in text.split(",")]
    if not all(0 <= r <= 1 for r in ratios):
        raise argparse.ArgumentTypeError(f"sampling ratios are 0..1, got {text}")
    return ratios


def table(per: dict[str, list[float]], header: str, unit: str) -> str:
    """Medians of ``unit`` per request and of the per-run difference to the "off" block of the same run."""
    med: Callable[[list[float]], float] = statistics.median
    off = per[OFF]
    lines = [header, "", f"| variant | {unit} per request (median) | − off, same run: median (min … max) | × off |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for name, values in per.items():
        diffs = [v - o for v, o in zip(values, off, strict=True)]
        spread = f"{med(diffs):+.2f} ({min(diffs):+.2f} … {max(diffs):+.2f})" if name != OFF else "-"
        lines.append(f"| {name} | {med(values):.1f} | {spread} | {med(values) / med(off):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_tracing_cpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=9, help="blocks per variant (the order rotated each time)")
    p.add_argument("--requests", type=int, default=3000, help="requests per block")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (wrk -c8 in the HTTP benchmark)")
    p.add_argument("--ratios", type=_ratios, default=[0, 0.01, 1], help="sampling ratios, one traced block each")
    p.add_argument("--instructions", action="store_true", help="count instructions under valgrind's callgrind")
    p.add_argument("--repo", type=Path, help="model repository (default: publish the fixture model)")
    p.add_argument("--inside-callgrind", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        repo = args.repo or prepare(None, Path(tmp))[0]
        if args.instructions:
            inner = [*(argv if argv is not None else sys.argv[1:]), "--repo", str(repo)]
            per = _instructions(args, [a for a in inner if a != "--instructions"], Path(tmp))
            unit = "thousand instructions"
        else:
            port = free_port()
            sink = [sys.executable, "-m", "loadtest.bench_tracing", "--sink", str(port)]
            with running(sink, ready=lambda: http_ok(f"http://127.0.0.1:{port}/"), what="OTLP receiver"):
                per, order, collections = asyncio.run(_measure(args, repo, f"http://127.0.0.1:{port}/v1/traces"))
            unit = "CPU µs"
    if args.inside_callgrind:
        print(json.dumps(order))
        return
    load = os.getloadavg()
    header = (
        f"1-row `POST /v1/ads/ctr` through ASGI in one process, {args.concurrency} in flight, {args.runs} runs of "
        f"{args.requests} requests per variant, order rotated; load average at the end "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )
    print(table(per, header, unit))
    if not args.instructions:
        runs = ", ".join(f"{name} {n * 1000 / (args.runs * args.requests):.1f}" for name, n in collections.items())
        print(f"\ncyclic GC runs (all generations) per 1,000 requests: {runs}")


if __name__ == "__main__":
    main()
