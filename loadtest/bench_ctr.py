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
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.harness import wrk
from loadtest.harness.procs import python_server as server
from loadtest.harness.timing import call_times, percentile_ms
from loadtest.peers.measure import Row, interleaved, summarize


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0


def in_process(
    version_dir: Path, bodies: dict[int, dict[str, Any]], concurrency: int, seconds: float
) -> dict[str, Result]:
    """Time ``session.run`` alone and featurizer + run on the rows of ``concurrency`` requests at once."""
    from app.runtime.ort_options import cpu_session
    from app.tasks.ctr.features import CtrFeaturizer

    featurizer = CtrFeaturizer.load(version_dir / "preprocess.json")
    session = cpu_session(version_dir / "model.onnx")
    out = {}
    for n, body in bodies.items():
        rows = [{**body["context"], **c["features"]} for c in body["candidates"]] * concurrency
        x = featurizer.transform_records(rows)
        out[f"onnx session only, {n} cand"] = _time(lambda x=x: session.run(["pctr"], x), concurrency, seconds)
        out[f"featurizer + session, {n} cand"] = _time(
            lambda rows=rows: session.run(["pctr"], featurizer.transform_records(rows)), concurrency, seconds
        )
    return out


def _time(fn: Any, requests_per_call: int, seconds: float) -> Result:
    times = call_times(fn, seconds, warmup=False)
    return Result(requests_per_call * len(times) / sum(times), percentile_ms(times, 0.5), percentile_ms(times, 0.99))


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
    return {
        n: {"context": {}, "candidates": [{"ad_id": f"ad{i}", "features": r} for i, r in enumerate(records[:n])]}
        for n in candidates
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_ctr", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, help="existing model repository (default: publish the fixture model)")
    p.add_argument("--duration", type=int, default=5, help="whole seconds per wrk run")
    p.add_argument("--runs", type=int, default=3, help="runs per cell; the table shows medians")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--candidates", default="1,100")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    p.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for the service, e.g. APP_MAX_QUEUE_DELAY_US=2000 (repeatable)",
    )
    p.add_argument(
        "--compare-tree",
        type=Path,
        metavar="DIR",
        help="also run the service from another checkout (e.g. `git worktree add /tmp/before <commit>`), "
        "interleaved run by run with this one: before/after figures from one machine state",
    )
    p.add_argument(
        "--compare-repo",
        type=Path,
        metavar="DIR",
        help="model repository for --compare-tree (published by that checkout's own code)",
    )
    p.add_argument("--no-naive", action="store_true", help="skip the per-request baseline server")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="another service configuration in the same interleaved run, e.g. "
        "'python-feat:APP_CTR_FEATURIZE=python' (repeatable)",
    )
    p.add_argument(
        "--granian",
        type=int,
        default=0,
        metavar="WORKERS",
        help="also serve the same app with granian (pip install granian; ASGI, uvloop) and this many workers",
    )
    args = p.parse_args(argv)
    wrk.binary()  # fails early when wrk is missing
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    candidates = [int(c) for c in args.candidates.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-ctr-") as tmp:
        work = Path(tmp)
        repo, version_dir = prepare(args.repo, work)
        bodies = bodies_for(candidates)
        scripts = {n: wrk.post_script(work / f"post{n}.lua", body) for n, body in bodies.items()}
        rows = measure(args, repo, version_dir, work, scripts, concurrencies)
        in_proc = [
            (name, c, r)
            for c in concurrencies
            for name, r in in_process(version_dir, bodies, c, min(args.duration, 3.0)).items()
        ]
    table = render(rows, in_proc, args)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


def measure(
    args: Any, repo: Path, version_dir: Path, work: Path, scripts: dict[int, Path], concurrencies: list[int]
) -> list[tuple[str, int, Row]]:
    service_env = {"MODEL_REPO": str(repo), "APP_LOG_LEVEL": "warning", "APP_GRPC_PORT": "0"}
    service_env.update(kv.split("=", 1) for kv in args.service_env)
    naive_args = ["-m", "loadtest.naive_app", "--version-dir", str(version_dir), "--port", "{port}"]
    out: list[tuple[str, int, Row]] = []
    labels = {
        "service": "service (batched)",
        "naive": "naive (per-request run)",
        "compare": f"service @ {args.compare_tree} (batched)",
    }
    with ExitStack() as stack:
        targets = {"service": stack.enter_context(server(["-m", "app"], service_env, work / "service.log"))}
        if not args.no_naive:
            targets["naive"] = stack.enter_context(server(naive_args, {}, work / "naive.log"))
        for spec in args.variant:
            name, _, kvs = spec.partition(":")
            env = {**service_env, **dict(kv.split("=", 1) for kv in kvs.split(",") if kv)}
            labels[name] = f"service [{name}] (batched)"
            targets[name] = stack.enter_context(server(["-m", "app"], env, work / f"{name}.log"))
        if args.granian:
            labels["granian"] = f"service on granian, {args.granian} workers (batched)"
            granian = ["-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--workers", str(args.granian)]
            granian += ["--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"]
            targets["granian"] = stack.enter_context(
                server([*granian, "--factory", "app.main:create_app"], service_env, work / "granian.log")
            )
        if args.compare_tree is not None:
            targets["compare"] = stack.enter_context(
                server(
                    ["-m", "app"],
                    {**service_env, "MODEL_REPO": str(args.compare_repo or repo)},
                    work / "compare.log",
                    cwd=args.compare_tree.resolve(),
                )
            )
        for n, script in scripts.items():
            for c in concurrencies:
                per = interleaved(targets, "/v1/ads/ctr", script, c, args.duration, args.runs)
                for name, samples in per.items():
                    out.append((f"{labels[name]}, {n} cand", c, summarize(name, samples)))
                print(f"  done: {n} candidates, concurrency {c}", file=sys.stderr)
    return out


def render(rows: list[tuple[str, int, Row]], in_proc: list[tuple[str, int, Result]], args: Any) -> str:
    lines = [
        f"duration {args.duration:g}s x {args.runs} runs per cell (medians), wrk -t1, concurrency = open connections"
        + (f"; service env {' '.join(args.service_env)}" if args.service_env else ""),
        "",
        "| target | concurrency | req/s | good req/s | good candidates/s | p50 ms | p99 ms | server cores | "
        "CPU µs/req | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c, r in rows:
        n = int(name.rsplit(", ", 1)[1].split()[0])
        lines.append(
            f"| {name} | {c} | {r.rps:,.0f} | {r.good_rps:,.0f} | {r.good_rps * n:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.cores:.2f} | {r.cpu_us_per_request:,.0f} | {r.non_2xx} | {r.socket_errors} |"
        )
    lines += ["", "| in-process | concurrency | req/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for name, c, res in in_proc:
        lines.append(f"| {name} | {c} | {res.rps:,.0f} | {res.p50_ms:.2f} | {res.p99_ms:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
