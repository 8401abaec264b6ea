"""``POST /v1/recommend`` over HTTP: the service (dynamic batching) vs a naive per-request app, with wrk.

Both servers are uvicorn subprocesses (uvloop + httptools) on one published ``recommend`` version. The naive
app is the obvious FastAPI handler: the same request model, history from an in-process dict seeded from the
version's ``histories.json``, one ``session.run`` per request (``history`` [1, L], ``exclude`` [1, E]) in
FastAPI's thread pool, ORT with 1 intra-op thread. ``wrk`` (one thread) sends known customers' ids
(``{"user_id": ..., "k": 10}``, rotating over ``--users`` customers so batches mix histories) or anonymous
sessions (``{"history": [...], "k": 10}``) at each concurrency; the servers are interleaved run by run so
background load hits both alike, and each cell is the median of ``--runs`` runs. The in-process rows time
``session.run`` alone on ``c`` rows at once (the model's ceiling, no HTTP).

    python -m compress run compress/configs/recommend.toml --repo /tmp/rec_repo
    python -m loadtest.bench_recommend --repo /tmp/rec_repo --duration 5 --runs 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from app.tasks.recommend.schemas import RecommendRequest  # module level: FastAPI resolves the handler's annotation
from loadtest.harness import wrk
from loadtest.peers.measure import Row, interleaved, summarize

BODY_KINDS = ("user", "session")
TARGET_RPS_RATIO, TARGET_P99_MS, TARGET_CLIENTS = 2.0, 20.0, 32


# ---- the naive per-request app (run as its own process: ``--serve-naive``) ----
def create_naive_app(version_dir: Path) -> Any:
    """FastAPI app answering ``/v1/recommend`` with one ``session.run`` per request, no batching."""
    from fastapi import FastAPI, HTTPException

    from app.tasks.recommend.state import HISTORIES_FILE, STATE_FILE, RecState, load_histories
    from compress.evaluate import session as ort_session

    state = RecState.load(version_dir / STATE_FILE)
    index = {it: i for i, it in enumerate(state.items) if i}
    histories = {
        u: [index[i] for i in h if i in index] for u, h in load_histories(version_dir / HISTORIES_FILE).items()
    }
    sess = ort_session(version_dir / "model.onnx", threads=1)
    version = int(version_dir.name)
    app = FastAPI()

    @app.post("/v1/recommend")
    def recommend(req: RecommendRequest) -> dict[str, Any]:  # sync: FastAPI runs it in its thread pool
        if req.history is None and req.user_id is None:
            raise HTTPException(422, "send a user_id or a history")
        if req.history is not None:
            seq, source = [index[i] for i in req.history if i in index], "request"
        else:
            seq = histories.get(str(req.user_id), [])
            source = "store" if seq else "none"
        seq = seq[: state.history_len]
        hist = np.zeros((1, state.history_len), np.int64)
        hist[0, : len(seq)] = seq
        excl = [index[i] for i in req.exclude if i in index] or [0]
        ids, scores = sess.run(None, {"history": hist, "exclude": np.asarray([excl], np.int64)})
        items = [
            {"item_id": state.items[i], "score": float(s), "title": state.titles[i]}
            for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True)
            if 0 < i and s > -1e8
        ][: req.k]
        return {
            "items": items,
            "model": version_dir.parent.name,
            "version": version,
            "degraded": False,
            "history_source": source,
            "history_used": len(seq),
            "unknown_items": [],
        }

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def serve_naive(version_dir: Path, port: int) -> None:
    import uvicorn

    uvicorn.run(
        create_naive_app(version_dir),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


# ---- request bodies ----
def bodies(version_dir: Path, kind: str, users: int, seed: int = 0) -> list[str]:
    """``users`` request bodies: known customers (ids with a stored history) or their histories sent inline."""
    from app.tasks.recommend.state import HISTORIES_FILE, load_histories

    hist = {u: h for u, h in load_histories(version_dir / HISTORIES_FILE).items() if h}
    rng = np.random.default_rng(seed)
    chosen = [str(u) for u in rng.choice(sorted(hist), size=min(users, len(hist)), replace=False)]
    if kind == "user":
        return [json.dumps({"user_id": u, "k": 10}) for u in chosen]
    return [json.dumps({"history": hist[u][:20], "k": 10}) for u in chosen]


def in_process(version_dir: Path, concurrencies: list[int], seconds: float) -> list[tuple[int, float, float, float]]:
    """(rows, rows/s, p50 ms, p99 ms) of ``session.run`` alone on ``rows`` customers at once (1 thread)."""
    from app.tasks.recommend.state import HISTORIES_FILE, STATE_FILE, RecState, load_histories
    from compress.evaluate import session as ort_session

    state = RecState.load(version_dir / STATE_FILE)
    index = {it: i for i, it in enumerate(state.items) if i}
    seqs = [
        [index[i] for i in h if i in index][: state.history_len]
        for h in load_histories(version_dir / HISTORIES_FILE).values()
        if h
    ]
    sess = ort_session(version_dir / "model.onnx", threads=1)
    out = []
    for c in concurrencies:
        hist = np.zeros((c, state.history_len), np.int64)
        for r, s in enumerate(seqs[:c]):
            hist[r, : len(s)] = s
        feeds = {"history": hist, "exclude": np.zeros((c, 1), np.int64)}
        sess.run(None, feeds)
        times: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        out.append(
            (
                c,
                c * len(times) / (sum(times) / 1e3),
                times[len(times) // 2],
                times[min(len(times) - 1, int(0.99 * len(times)))],
            )
        )
    return out


# ---- the benchmark ----
def measure(
    args: Any, repo: Path, version_dir: Path, work: Path, scripts: dict[str, Path], concurrencies: list[int]
) -> list[tuple[str, int, Row]]:
    """Interleaved wrk runs against every server; medians per (body kind, target, concurrency)."""
    from loadtest.harness.procs import python_server as server

    service_env = {
        "MODEL_REPO": str(repo),
        "APP_LOG_LEVEL": "warning",
        "APP_GRPC_PORT": "0",
        "APP_TASK_MODELS": json.dumps({"recommend": version_dir.parent.name}),
        "APP_REQUIRED_MODELS": version_dir.parent.name,
        "APP_WORKERS": "1",
    }
    service_env.update(kv.split("=", 1) for kv in args.service_env)
    labels = {"service": "service (batched, 1 worker)", "naive": "naive (per-request run)"}
    out: list[tuple[str, int, Row]] = []
    with ExitStack() as stack:
        targets = {"service": stack.enter_context(server(["-m", "app"], service_env, work / "service.log"))}
        targets["naive"] = stack.enter_context(
            server(
                ["-m", "loadtest.bench_recommend", "--serve-naive", str(version_dir), "--port", "{port}"],
                {},
                work / "naive.log",
            )
        )
        if args.workers > 1:
            labels["workers"] = f"service (batched, {args.workers} workers)"
            env = {**service_env, "APP_WORKERS": str(args.workers)}
            targets["workers"] = stack.enter_context(server(["-m", "app"], env, work / "workers.log"))
        same_answers(targets, scripts)
        for kind, script in scripts.items():
            for c in concurrencies:
                per = interleaved(targets, "/v1/recommend", script, c, args.duration, args.runs)
                for name, samples in per.items():
                    out.append((f"{labels[name]}, {kind}", c, summarize(name, samples)))
                print(f"  done: {kind} bodies, {c} clients", file=sys.stderr)
    return out


def same_answers(targets: dict[str, tuple[str, int]], scripts: dict[str, Path], n: int = 20) -> None:
    """Every server returns the same item ids for the first ``n`` bodies of each kind (else the comparison is off)."""
    import httpx

    for script in scripts.values():
        for body in script.with_suffix(".jsonl").read_text().splitlines()[:n]:
            answers = {}
            for name, (url, _) in targets.items():
                r = httpx.post(url + "/v1/recommend", content=body, headers={"Content-Type": "application/json"})
                r.raise_for_status()
                answers[name] = [it["item_id"] for it in r.json()["items"]]
            if len({tuple(a) for a in answers.values()}) != 1:
                raise SystemExit(f"servers disagree on {body}: {answers}")
    print(f"  same answers from {', '.join(targets)} on {n} bodies of each kind", file=sys.stderr)


def render(
    rows: list[tuple[str, int, Row]], in_proc: list[tuple[int, float, float, float]], args: Any, version_dir: Path
) -> str:
    lines = [
        f"`{version_dir.parent.name}/{version_dir.name}`; {args.duration}s x {args.runs} interleaved runs per cell "
        "(medians), wrk -t1, clients = open connections"
        + (f"; service env {' '.join(args.service_env)}" if args.service_env else ""),
        "",
        "| target | clients | req/s | p50 ms | p99 ms | x naive | server cores | CPU µs/req | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    naive = {(name.rsplit(", ", 1)[1], c): r for name, c, r in rows if name.startswith("naive")}
    verdicts = []
    for name, c, r in rows:
        kind = name.rsplit(", ", 1)[1]
        ref = naive.get((kind, c))
        ratio = r.rps / ref.rps if ref and ref.rps else float("nan")
        lines.append(
            f"| {name} | {c} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {ratio:.2f} | {r.cores:.2f} | "
            f"{r.cpu_us_per_request:,.0f} | {r.non_2xx} | {r.socket_errors} |"
        )
        if c == TARGET_CLIENTS and not name.startswith("naive"):
            ok = ratio >= TARGET_RPS_RATIO and r.p99_ms < TARGET_P99_MS and r.non_2xx + r.socket_errors == 0
            verdicts.append(
                f"{name} at {c} clients: {ratio:.2f}x naive, p99 {r.p99_ms:.1f} ms -> "
                f"{'target met' if ok else 'target NOT met'}"
            )
    lines += [
        "",
        "| in-process: `session.run` alone (1 thread) | rows per call | rows/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| model only | {c} | {rps:,.0f} | {p50:.2f} | {p99:.2f} |" for c, rps, p50, p99 in in_proc]
    lines += [
        "",
        f"Targets (>= {TARGET_RPS_RATIO:g}x the naive req/s at {TARGET_CLIENTS} clients, p99 < "
        f"{TARGET_P99_MS:g} ms, no errors):",
        *[f"- {v}" for v in verdicts],
    ]
    return "\n".join(lines)


def latest_version(repo: Path, model: str) -> Path:
    from app.repository import list_versions

    versions = list_versions(repo, model)
    if not versions:
        raise SystemExit(
            f"{repo} has no published {model} version (python -m compress run "
            "compress/configs/recommend.toml --repo REPO)"
        )
    return repo / model / str(versions[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_recommend", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, help="model repository with a published recommend version")
    p.add_argument("--model", default="recommend")
    p.add_argument("--duration", type=int, default=5, help="whole seconds per wrk run")
    p.add_argument("--runs", type=int, default=3, help="interleaved runs per cell; the table shows medians")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--bodies", default="user", help=f"comma-separated, from {BODY_KINDS}")
    p.add_argument("--users", type=int, default=200, help="distinct customers the wrk script rotates over")
    p.add_argument("--workers", type=int, default=1, help="also run the service with this many worker processes")
    p.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    p.add_argument("--serve-naive", type=Path, metavar="VERSION_DIR", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=8001, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_naive:
        serve_naive(args.serve_naive, args.port)
        return
    if args.repo is None:
        p.error("--repo is required")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    kinds = [k for k in args.bodies.split(",") if k]
    if not set(kinds) <= set(BODY_KINDS):
        p.error(f"--bodies: choose from {BODY_KINDS}")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    version_dir = latest_version(args.repo, args.model)
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        work = Path(tmp)
        scripts = {}
        for kind in kinds:
            (work / f"{kind}.jsonl").write_text("\n".join(bodies(version_dir, kind, args.users)) + "\n")
            scripts[kind] = work / f"{kind}.lua"
            wrk.rotating_script(scripts[kind], work / f"{kind}.jsonl")
        rows = measure(args, args.repo, version_dir, work, scripts, concurrencies)
    in_proc = in_process(version_dir, concurrencies, min(args.duration, 3.0))
    table = render(rows, in_proc, args, version_dir)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
