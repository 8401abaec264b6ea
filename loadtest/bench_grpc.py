"""gRPC vs HTTP throughput for ad scoring (1-row and 100-candidate calls) on one real service process.

The same closed-loop load generator drives both protocols, so the difference is the transport, not the client:
``concurrency`` asyncio workers (uvloop) each send the next call when the previous answer arrives, with
pre-encoded requests — HTTP/1.1 keep-alive over raw sockets (``POST /v1/ads/ctr``, JSON) and gRPC over one
HTTP/2 channel (``shopinfer.v1.TaskService/ScoreAds``, compact feature form, pre-serialized: no client-side message objects).
``wrk`` (C) runs the HTTP case too, as the reference for the client's own cost; with ``--perf-analyzer`` Triton's
``perf_analyzer`` adds KServe v2 ``ModelInfer`` rows (pre-featurized tensors, ``-b 1`` and ``-b 100``). Runs of the
protocols are interleaved; each cell is the median of ``--runs`` runs of ``--duration`` seconds.

Run from the repository root::

    python -m loadtest.bench_grpc                                  # publishes the test fixture model
    python -m loadtest.bench_grpc --repo model_repo --duration 5 --runs 3 --perf-analyzer --markdown /tmp/g.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loadtest.bench_ctr import Result, bodies_for, prepare
from loadtest.harness import wrk
from loadtest.harness.procs import free_port, python_server


def median(results: list[Result]) -> Result:
    return Result(statistics.median(r.rps for r in results), statistics.median(r.p50_ms for r in results),
                  statistics.median(r.p99_ms for r in results), sum(r.errors for r in results))  # fmt: skip


def run_wrk(url: str, script: Path, concurrency: int, duration_s: int) -> Result:
    """``wrk -t1`` (C, one thread) with ``--latency``; non-2xx answers and socket errors count as errors."""
    r = wrk.run(url, script, concurrency, duration_s)
    return Result(r.rps, r.p50_ms, r.p99_ms, r.errors)


@contextmanager
def service(repo: Path, log: Path, env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """``python -m app`` on free HTTP and gRPC ports; yields (http base URL, grpc target)."""
    grpc_port = free_port()
    full = {"MODEL_REPO": str(repo), "APP_GRPC_PORT": str(grpc_port), "APP_REQUIRED_MODELS": "ad-ctr", **env}
    with python_server(["-m", "app"], full, log) as (url, _):
        yield url, f"127.0.0.1:{grpc_port}"


async def closed_loop(call: Callable[[], Awaitable[bool]], concurrency: int, seconds: float) -> Result:
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < end:
            t = time.perf_counter()
            ok = await call()
            latencies.append(time.perf_counter() - t)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3

    return Result(len(latencies) / elapsed, pct(0.5), pct(0.99), errors)


async def http_run(url: str, body: bytes, concurrency: int, seconds: float) -> Result:
    host, port = url.removeprefix("http://").split(":")
    request = (f"POST /v1/ads/ctr HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]
    free = list(conns)

    async def call() -> bool:
        reader, writer = free.pop()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            return head.startswith(b"HTTP/1.1 200")
        finally:
            free.append((reader, writer))

    try:
        return await closed_loop(call, concurrency, seconds)
    finally:
        for _, writer in conns:
            writer.close()


async def grpc_run(target: str, message: bytes, concurrency: int, seconds: float) -> Result:
    from grpc import aio

    async with aio.insecure_channel(target) as channel:
        method = channel.unary_unary("/shopinfer.v1.TaskService/ScoreAds")  # bytes in, bytes out

        async def call() -> bool:
            try:
                await method(message, timeout=10)
                return True
            except aio.AioRpcError:
                return False

        await channel.channel_ready()
        return await closed_loop(call, concurrency, seconds)


def score_ads_bytes(body: dict[str, Any]) -> bytes:
    from app.grpc.task_messages import encode_score_ads

    return bytes(encode_score_ads(body).SerializeToString())


def perf_analyzer(target: str, version_dir: Path, batch: int, concurrency: int, seconds: int, work: Path) -> Result:
    """KServe v2 ModelInfer over gRPC with real featurized rows (``-b`` rows per request); ``seconds`` are split
    into the 3 windows perf_analyzer needs, and the last window is reported."""
    from app.tasks.ctr.features import CtrFeaturizer
    from tests.fixtures.ctr_model import raw_records

    x = CtrFeaturizer.load(version_dir / "preprocess.json").transform_records(raw_records(64))
    data = {"data": [{"dense": x["dense"][i].tolist(), "sparse": x["sparse"][i].tolist()} for i in range(64)]}
    (work / "pa.json").write_text(json.dumps(data))
    csv = work / "pa.csv"
    cmd = ["perf_analyzer", "-m", "ad-ctr", "-i", "grpc", "-u", target, "-b", str(batch),
           "--concurrency-range", str(concurrency), "--input-data", str(work / "pa.json"),
           "--measurement-interval", str(seconds * 1000 // 3), "--stability-percentage", "999", "--max-trials", "3",
           "-f", str(csv)]  # fmt: skip
    subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds * 4 + 60)
    header, row = csv.read_text().splitlines()[:2]
    stats = dict(zip(header.split(","), row.split(","), strict=True))
    return Result(
        float(stats["Inferences/Second"]) / batch, int(stats["p50 latency"]) / 1e3, int(stats["p99 latency"]) / 1e3
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_grpc", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, help="existing model repository (default: publish the fixture model)")
    p.add_argument("--duration", type=int, default=5, help="whole seconds per run")
    p.add_argument("--runs", type=int, default=3, help="runs per cell; the table shows medians")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--candidates", default="1,100")
    p.add_argument("--perf-analyzer", action="store_true", help="add KServe v2 ModelInfer rows (perf_analyzer)")
    p.add_argument("--workers", type=int, default=1, help="service worker processes (APP_WORKERS)")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    args = p.parse_args(argv)
    import uvloop

    concurrencies = [int(c) for c in args.concurrency.split(",")]
    candidates = [int(c) for c in args.candidates.split(",")]
    rows: list[tuple[str, int, Result]] = []
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        work = Path(tmp)
        repo, version_dir = prepare(args.repo, work)
        bodies = bodies_for(candidates)
        # no admission refusals: this measures throughput, not the overload policy
        env = {"APP_MAX_QUEUE_DELAY_US": "0", "APP_QUEUE_BUDGET_MS": "60000", "APP_WORKERS": str(args.workers)}
        with service(repo, work / "service.log", env) as (url, target):
            for n, body in bodies.items():
                raw = json.dumps(body).encode()
                script = wrk.post_script(work / f"body{n}.lua", raw.decode())
                message = score_ads_bytes(body)
                for c in concurrencies:
                    cells: dict[str, list[Result]] = {}
                    for _ in range(args.runs):  # interleaved, so background load hits every protocol alike
                        cells.setdefault(f"gRPC ScoreAds, {n} cand", []).append(
                            uvloop.run(grpc_run(target, message, c, args.duration))
                        )
                        cells.setdefault(f"HTTP /v1/ads/ctr, {n} cand", []).append(
                            uvloop.run(http_run(url, raw, c, args.duration))
                        )
                        if shutil.which("wrk"):
                            cells.setdefault(f"HTTP /v1/ads/ctr via wrk, {n} cand", []).append(
                                run_wrk(url + "/v1/ads/ctr", script, c, args.duration)
                            )
                        if args.perf_analyzer and shutil.which("perf_analyzer"):
                            cells.setdefault(f"gRPC v2 ModelInfer (perf_analyzer), {n} rows", []).append(
                                perf_analyzer(target, version_dir, n, c, args.duration, work)
                            )
                    rows += [(name, c, median(results)) for name, results in cells.items()]
                    print(f"{n} cand, concurrency {c}: " + "; ".join(
                        f"{name.split(',')[0]} {median(r).rps:,.0f}/s" for name, r in cells.items()), flush=True)  # fmt: skip
    rows.sort(key=lambda r: (r[0].split(", ")[1], r[1], r[0]))
    lines = [f"duration {args.duration}s x {args.runs} runs per cell (medians), closed loop, concurrency = calls in flight, "
             f"{args.workers} worker process(es)",
             "", "| call | concurrency | calls/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {name} | {c} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |" for name, c, r in rows]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
