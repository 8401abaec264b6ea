"""How close each task endpoint comes to what its model allows: end-to-end throughput as a fraction of the
runtime-only limit on the same cores.

``python -m loadtest.limits [--repo model_repo] [--endpoints ctr] [--json PATH]``

For each endpoint at its realistic shape, the **runtime-only limit** is ONNX Runtime alone, in this process: the
version's runtime built by the service's own factory (:func:`app.registry.default_runtime_factory`: same model
file, same session options from the same settings), fed the exact tensors the service's task builds for one
request (``task.prepare`` once, outside the loop), timed in a loop with one thread per server core. The
**end-to-end** figure is ``python -m app`` pinned to those same cores, driven by wrk from the other cores with
the same request body. Both are measured interleaved over ``--rounds`` and reported as medians; the row's
``fraction_of_runtime`` is end-to-end requests/s over runtime-only requests/s.

Endpoints: ``ctr`` (100 candidates, ``/v1/ads/ctr``) and ``chat`` (one short message, ``/v1/chat``). Search
(50 candidates) and recommend (a known customer) are listed in :data:`PLANNED` with the reason they are not
measured yet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.repository import list_versions, read_manifest
from loadtest.bench_ctr import server
from loadtest.harness import wrk
from loadtest.peers.measure import run_wrk

PLANNED = {
    "search": "50 candidates: the runtime-only recipe (query + product token rows) is not written yet",
    "recommend": "a known customer: the runtime-only recipe needs the feature store (Redis) and is not written yet",
}


@dataclass(frozen=True)
class Endpoint:
    """One task endpoint at its realistic shape: the model, the URL path, the body and the task's rows of it."""

    name: str
    model: str
    path: str
    shape: str
    body: Callable[[], dict[str, Any]]
    rows: Callable[[dict[str, Any]], list[Any]]


def _ctr_body(n: int = 100) -> dict[str, Any]:
    from tests.fixtures.ctr_model import raw_records

    return {"context": {}, "candidates": [{"ad_id": f"ad{i}", "features": r} for i, r in enumerate(raw_records(n))]}


ENDPOINTS = {
    "ctr": Endpoint(
        "ctr",
        "ad-ctr",
        "/v1/ads/ctr",
        "100 candidates",
        _ctr_body,
        lambda body: [{**body["context"], **c["features"]} for c in body["candidates"]],
    ),
    "chat": Endpoint(
        "chat",
        "chat-intent",
        "/v1/chat",
        "one short message",
        lambda: {"message": "I want to cancel my order, it has not shipped yet"},
        lambda body: [body["message"]],
    ),
}


def runtime_call(version_dir: Path, endpoint: Endpoint, body: dict[str, Any]) -> Callable[[], object]:
    """One request's inference exactly as the service runs it, minus HTTP, validation and batching."""
    from app.metrics import Metrics
    from app.registry import default_runtime_factory
    from app.settings import Settings
    from app.tasks.base import TaskContext, VersionFiles
    from app.tasks.registry import task_for_kind

    settings = Settings()
    manifest = read_manifest(version_dir)
    runtime = default_runtime_factory(settings)(manifest)
    runtime.load(version_dir, manifest)
    cls = task_for_kind(manifest.preprocessing.kind) if manifest.preprocessing else None
    if cls is None:
        raise SystemExit(f"{version_dir}: no task serves this version's preprocessing")
    task = cls.load(VersionFiles(version_dir, manifest), TaskContext(settings, Metrics()))
    feeds = {k: v for k, v in task.prepare(endpoint.rows(body)).items() if not k.startswith("_")}  # as the batcher
    infer = task.infer_fn(runtime.infer)
    first = infer(feeds)
    rows = len(endpoint.rows(body))
    if any(np.asarray(v).shape[0] != rows for v in first.values()):
        raise AssertionError(
            f"{endpoint.name}: the runtime answered {[v.shape for v in first.values()]} for {rows} rows"
        )
    return lambda: infer(feeds)


def timed_loop(call: Callable[[], object], threads: int, seconds: float) -> tuple[float, float]:
    """Calls per second of ``call`` from ``threads`` threads for ``seconds`` (ORT releases the GIL in ``run``),
    and this process's CPU milliseconds per call (on a shared machine the rate follows the CPU share it got)."""
    counts = [0] * threads
    end = time.perf_counter() + seconds

    def work(i: int) -> None:
        while time.perf_counter() < end:
            call()
            counts[i] += 1

    t0, c0 = time.perf_counter(), time.process_time()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    n = max(1, sum(counts))
    return n / (time.perf_counter() - t0), (time.process_time() - c0) * 1e3 / n


def split_cores(server_cores: int) -> tuple[set[int], set[int]]:
    """The cores the server (and the runtime-only loop) get, and the rest for the load generator."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) <= server_cores:
        return set(cores), set(cores)
    return set(cores[:server_cores]), set(cores[server_cores:])


def measure(
    endpoint: Endpoint, repo: Path, *, seconds: int, rounds: int, connections: int, server_cores: int, workdir: Path
) -> dict[str, Any]:
    version = list_versions(repo, endpoint.model)
    if not version:
        raise SystemExit(f"{repo} has no published {endpoint.model} version (needed by {endpoint.name})")
    version_dir = repo / endpoint.model / str(version[-1])
    body = endpoint.body()
    script = wrk.post_script(workdir / f"{endpoint.name}.lua", body)
    mine, others = split_cores(server_cores)
    everything = os.sched_getaffinity(0)
    env = {"APP_MODEL_REPO": str(repo), "APP_WORKERS": "1", "APP_GRPC_PORT": "0", "APP_LOG_LEVEL": "warning"}
    runtime_rps, runtime_cpu, e2e_rps, e2e_cpu, p99, cores_used, errors = [], [], [], [], [], [], 0
    os.sched_setaffinity(0, mine)  # the server inherits the cores it starts on
    try:
        call = runtime_call(version_dir, endpoint, body)
        with server(["-m", "app"], env, workdir / f"{endpoint.name}.log") as (url, pid):
            for _ in range(rounds):
                os.sched_setaffinity(0, mine)
                rate, cpu_ms = timed_loop(call, len(mine), seconds)
                runtime_rps.append(rate)
                runtime_cpu.append(cpu_ms)
                os.sched_setaffinity(0, others)  # wrk inherits these
                sample = run_wrk(url + endpoint.path, script, connections, seconds, pid)
                e2e_rps.append(sample.wrk.good_rps)
                p99.append(sample.wrk.p99_ms)
                cores_used.append(sample.cores)
                e2e_cpu.append(sample.cores * 1e3 / sample.wrk.rps if sample.wrk.rps else float("nan"))
                errors += sample.wrk.errors
    finally:
        os.sched_setaffinity(0, everything)
    rt, e2e = statistics.median(runtime_rps), statistics.median(e2e_rps)
    return {
        "endpoint": endpoint.name,
        "path": endpoint.path,
        "shape": endpoint.shape,
        "version": str(version_dir),
        "server_cores": sorted(mine),
        "runtime_rps": rt,
        "e2e_rps": e2e,
        "fraction_of_runtime": e2e / rt if rt else 0.0,
        "e2e_p99_ms": statistics.median(p99),
        "runtime_cpu_ms_per_request": statistics.median(runtime_cpu),
        "e2e_cpu_ms_per_request": statistics.median(e2e_cpu),
        "server_cpu_cores": statistics.median(cores_used),
        "errors": errors,
        "rounds": rounds,
        "runtime_rps_rounds": runtime_rps,
        "e2e_rps_rounds": e2e_rps,
        "loadavg": os.getloadavg(),
    }


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| endpoint | shape | runtime-only req/s | end-to-end req/s | fraction | e2e p99 ms | errors | server cores |"
             " CPU ms/req runtime-only | CPU ms/req end-to-end |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['endpoint']} | {r['shape']} | {r['runtime_rps']:.0f} | {r['e2e_rps']:.0f} | "
            f"{r['fraction_of_runtime']:.0%} | {r['e2e_p99_ms']:.1f} | {r['errors']} | {len(r['server_cores'])} | "
            f"{r['runtime_cpu_ms_per_request']:.2f} | {r['e2e_cpu_ms_per_request']:.2f} |"
        )
    for name, why in PLANNED.items():
        lines.append(f"| {name} | not measured: {why} | | | | | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.limits", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, help="model repository (default: publish the CTR test fixture)")
    p.add_argument("--endpoints", nargs="*", choices=list(ENDPOINTS), help="default: all with --repo, else ctr")
    p.add_argument("--seconds", type=int, default=5, help="per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=4, help="wrk connections (more only queues: one core)")
    p.add_argument("--server-cores", type=int, default=1, help="cores for the server and the runtime-only loop")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="limits-") as tmp:
        work = Path(tmp)
        repo = args.repo
        if repo is None:
            from loadtest.bench_ctr import prepare

            repo, _ = prepare(None, work)
        rows = [
            measure(ENDPOINTS[e], repo, seconds=args.seconds, rounds=args.rounds, connections=args.connections,
                    server_cores=args.server_cores, workdir=work)
            for e in args.endpoints or (list(ENDPOINTS) if args.repo else ["ctr"])
        ]  # fmt: skip
    print(render(rows))
    print(f"load average {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
