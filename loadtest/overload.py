"""Overload figures (docs/benchmarks.md, "Overload"): unloaded p99, capacity, admitted p99 / goodput at 3x capacity.

Starts ``python -m app`` on a repository (or uses ``--url``), then for each traffic shape (1-row and
100-candidate ``/v1/ads/ctr`` requests):

1. unloaded: one connection, closed loop -> p99 of a request on an idle service;
2. capacity: closed loop at a few connection counts -> the highest rate of 200 responses;
3. overload: 64 connections paced so the offered rate is ``--factor`` x capacity (wrk's ``delay()``), ->
   admitted (200) p99, goodput (200/s) relative to capacity, refused (503) share and p99.

Latencies are split by status with ``loadtest/overload.lua`` (the send time rides in ``x-request-id``).

    python -m loadtest.overload --repo /tmp/repo --seconds 8                    # current settings
    python -m loadtest.overload --repo /tmp/repo --env APP_QUEUE_BUDGET_MS=     # admission off (row cap only)
    # a 2-core box: server on CPU 0, wrk on CPU 1, so the generator can offer 3x without stealing server CPU
    python -m loadtest.overload --repo /tmp/repo --server-cpus 0 --client-cpus 1 --env APP_WORKERS=1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from loadtest.harness import cpu
from loadtest.harness import wrk as harness_wrk
from loadtest.harness.procs import free_port, http_ok, service_env, spawn, stop

ROOT = Path(__file__).resolve().parents[1]


CLIENT_CPUS: list[str] = []  # taskset prefix for wrk (--client-cpus), set once in main()
SERVER_PID: list[int] = []  # the started server (not with --url): its CPU time is read around every wrk run


def wrk(url: str, body_file: Path, connections: int, seconds: float, pace_ms: int = 0) -> dict[str, Any]:
    tree = cpu.process_tree(SERVER_PID[0]) if SERVER_PID else []
    cpu0 = cpu.cpu_seconds(tree)
    run = harness_wrk.run_overload(url, body_file, connections=connections, seconds=seconds, pace_ms=pace_ms,
                                   prefix=CLIENT_CPUS)  # fmt: skip
    return {"status": run.status, "socket_errors": run.socket_errors, "seconds": run.duration_s,
            "server_cpu_s": cpu.cpu_seconds(tree) - cpu0 if tree else None}  # fmt: skip


def feasibility(capacity_run: dict[str, Any], over: dict[str, Any], offered_x: float) -> dict[str, Any]:
    """What the server's CPU allows at this offered load, from the runs themselves.

    ``serve`` = server CPU per answered request at capacity (everything refused there is ignored: none is);
    ``refuse`` = what the overload run's CPU left after its answered requests, per refused request. With
    ``cores`` = the server's CPU share at capacity, answering ``g`` x capacity while refusing the rest of ``f`` x
    capacity needs ``g*serve + (f-g)*refuse <= cores/capacity``, so ``g <= (1 - f*rho) / (1 - rho)`` with
    ``rho = refuse/serve``: goodput beyond that bound is impossible for any admission rule on this CPU.
    """
    n_ok = capacity_run["status"].get("200", {}).get("n", 0)
    over_ok, over_refused = (over["status"].get(k, {}).get("n", 0) for k in ("200", "503"))
    if capacity_run.get("server_cpu_s") is None or not n_ok or not over_refused:
        return {}
    serve = capacity_run["server_cpu_s"] / n_ok
    refuse = max(0.0, over["server_cpu_s"] - over_ok * serve) / over_refused
    rho = refuse / serve
    bound = max(0.0, (1 - offered_x * rho) / (1 - rho)) if rho < 1 else 0.0
    return {"serve_cpu_us": round(serve * 1e6, 1), "refuse_cpu_us": round(refuse * 1e6, 1),
            "goodput_bound_of_capacity": round(min(1.0, bound), 3)}  # fmt: skip


def rate(doc: dict[str, Any], status: str) -> float:
    return float(doc["status"].get(status, {}).get("n", 0)) / float(doc["seconds"])


def p99_ms(doc: dict[str, Any], status: str) -> float | None:
    s = doc["status"].get(status)
    return None if s is None or s["sampled"] == 0 else s["p99_us"] / 1000


def measure(
    url: str, body_file: Path, seconds: float, factor: float, conns: list[int], connections: int = 64
) -> dict[str, Any]:
    unloaded = wrk(url, body_file, 1, seconds)
    capacity_runs = {c: wrk(url, body_file, c, seconds) for c in conns}
    best = max(capacity_runs, key=lambda c: rate(capacity_runs[c], "200"))
    capacity = rate(capacity_runs[best], "200")
    # closed loop: a connection's cycle is its response time + the pause, so pace from the target rate, then
    # shorten the pause until the offered rate is within 15 % of the target (at most 4 tries)
    target = factor * capacity
    pace_ms = max(1, round(1000 * connections / target))
    for _ in range(4):
        over = wrk(url, body_file, connections, seconds, pace_ms)
        total = sum(v["n"] for v in over["status"].values()) / over["seconds"]
        if total >= 0.85 * target or pace_ms == 1:
            break
        latency_ms = 1000 * connections / max(total, 1e-9) - pace_ms  # cycle = pause + mean response time
        pace_ms = max(1, round(1000 * connections / target - latency_ms))
    return {
        "unloaded_p99_ms": p99_ms(unloaded, "200"),
        "capacity_rps": round(capacity, 1), "capacity_at_connections": best,
        "capacity_p99_ms": p99_ms(capacity_runs[best], "200"),
        "offered_rps": round(total, 1), "offered_x_capacity": round(total / capacity, 2), "pace_ms": pace_ms,
        "admitted_p99_ms": p99_ms(over, "200"), "goodput_rps": round(rate(over, "200"), 1),
        "goodput_of_capacity": round(rate(over, "200") / capacity, 3),
        "refused_share": round(rate(over, "503") / max(total, 1e-9), 3), "refused_p99_ms": p99_ms(over, "503"),
        "other_statuses": {k: v["n"] for k, v in over["status"].items() if k not in ("200", "503")},
        "socket_errors": over["socket_errors"],
        **feasibility(capacity_runs[best], over, total / capacity),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, help="model repository to serve (starts python -m app)")
    p.add_argument("--url", help="an already running service instead")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--factor", type=float, default=3.0, help="offered load as a multiple of capacity")
    p.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the server")
    p.add_argument("--shapes", default="1,100", help="candidates per request, comma-separated")
    p.add_argument("--server-cpus", help="pin the server to these CPUs (taskset list, e.g. 0)")
    p.add_argument("--client-cpus", help="pin wrk to these CPUs (e.g. 1): on a small box the load generator")
    p.add_argument("--connections", type=int, default=64, help="wrk connections of the overload run")
    args = p.parse_args(argv)
    harness_wrk.binary()  # fails early when wrk is missing
    if (args.server_cpus or args.client_cpus) and shutil.which("taskset") is None:
        sys.exit("--server-cpus/--client-cpus need taskset (util-linux)")
    CLIENT_CPUS[:] = ["taskset", "-c", args.client_cpus] if args.client_cpus else []
    server_cpus = ["taskset", "-c", args.server_cpus] if args.server_cpus else []
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.ctr_model import raw_records

    proc = None
    url = args.url
    if url is None:
        port = free_port()
        env = service_env(
            port, MODEL_REPO=str(args.repo), APP_LOG_LEVEL="warning", **dict(kv.split("=", 1) for kv in args.env)
        )
        url = f"http://127.0.0.1:{port}"
        ready = url + "/v2/health/ready"
        proc = spawn([*server_cpus, sys.executable, "-m", "app"], ready=lambda: http_ok(ready), what=ready, env=env)
        SERVER_PID[:] = [proc.pid]  # taskset execs the server in place: same pid
    try:
        results = {}
        for n in (int(s) for s in args.shapes.split(",")):
            records = raw_records(n)
            body = {"candidates": [{"ad_id": f"a{i}", "features": r} for i, r in enumerate(records)]}
            body_file = Path(tempfile.mkstemp(suffix=".json")[1])
            body_file.write_text(json.dumps(body))
            conns = [4, 16] if n > 1 else [16, 64]
            results[f"{n}-candidate"] = measure(
                url + "/v1/ads/ctr", body_file, args.seconds, args.factor, conns, args.connections
            )
            body_file.unlink()
            print(json.dumps({f"{n}-candidate": results[f"{n}-candidate"]}), flush=True)
    finally:
        if proc is not None:
            stop(proc, 30)


if __name__ == "__main__":
    main()
