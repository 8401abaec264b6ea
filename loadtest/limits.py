"""How close each task endpoint comes to what its model allows: end-to-end throughput as a fraction of the
runtime-only limit on the same cores.

``python -m loadtest.limits [--repo model_repo] [--endpoints ctr chat search recommend] [--json PATH]``

For each endpoint at its realistic shape, the **runtime-only limit** is ONNX Runtime alone, in this process: the
version's runtime built by the service's own factory (:func:`app.registry.default_runtime_factory`: same model
file, same session options from the same settings), fed the exact tensors the service's task builds for one
request (``task.prepare`` once, outside the loop), timed in a loop with one thread per server core. The
**end-to-end** figure is ``python -m app`` pinned to those same cores, driven by wrk from the other cores with
the same request body. Both are measured interleaved over ``--rounds`` and reported as medians; the row's
``fraction_of_runtime`` is end-to-end requests/s over runtime-only requests/s, and ``cpu_fraction_of_runtime``
the runtime-only CPU per request over the server's (the steadier figure when other jobs share the cores).

Endpoints: ``ctr`` (100 candidates, ``/v1/ads/ctr``), ``ctr-columns`` (the same candidates as the columnar
body of ``/v1/ads/ctr``), ``chat`` (one short message, ``/v1/chat``), ``search``
(50 catalogue candidates, ``/v1/search/rank``: the runtime sees the query row; the 50 stored product vectors are
a dot product outside it) and ``recommend`` (a known customer, ``/v1/recommend``: the history is read from the
feature store, the in-process or SQLite store seeded from the version's histories when no Redis is set, once
for the runtime-only loop and per request end to end). ``--baseline-checkout`` adds a second end-to-end server
running another checkout's code, interleaved with the first (before/after of a change).
:mod:`loadtest.cost_growth` uses the same measurement for several shapes per endpoint.
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
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.repository import list_versions, read_manifest
from loadtest.harness import wrk
from loadtest.harness.procs import python_server as server
from loadtest.peers.measure import run_wrk


@dataclass(frozen=True)
class Loaded:
    """A published version loaded as the service loads it: its task state and the batcher's inference call."""

    version_dir: Path
    task: Any  # app.tasks.base.Task
    infer: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Endpoint:
    """One task endpoint at one shape: the model, the URL path, the body and the rows the task's ``prepare``
    gets for that body (what the route hands the batcher)."""

    name: str
    model: str
    path: str
    shape: str
    body: Callable[[Loaded], dict[str, Any]]
    rows: Callable[[Loaded, dict[str, Any]], list[Any]]


def ctr_body(n: int) -> dict[str, Any]:
    """``n`` candidates: real Criteo rows (the test fixture's log), no context."""
    from tests.fixtures.ctr_model import raw_records

    return {"context": {}, "candidates": [{"ad_id": f"ad{i}", "features": r} for i, r in enumerate(raw_records(n))]}


def _ctr_rows(_: Loaded, body: dict[str, Any]) -> list[Any]:
    return [{**body["context"], **c["features"]} for c in body["candidates"]]


def ctr(n: int = 100) -> Endpoint:
    return Endpoint(
        "ctr", "ad-ctr", "/v1/ads/ctr", f"{n} candidate{'s' if n != 1 else ''}", lambda _: ctr_body(n), _ctr_rows
    )


def _ctr_column_rows(_: Loaded, body: dict[str, Any]) -> list[Any]:
    from app.tasks.ctr.columns import column_rows
    from app.tasks.ctr.schemas import CtrColumnsRequest

    return list(column_rows(CtrColumnsRequest.model_validate(body)))


def ctr_columns(n: int = 100) -> Endpoint:
    """The same candidates as :func:`ctr`, sent as the columnar body (``ad_ids`` + ``columns``)."""
    from app.tasks.ctr.columns import to_columns

    return Endpoint("ctr-columns", "ad-ctr", "/v1/ads/ctr", f"{n} candidate{'s' if n != 1 else ''}, columnar body",
                    lambda _: to_columns(ctr_body(n)), _ctr_column_rows)  # fmt: skip


CHAT_MESSAGES = {
    "short": "I want to cancel my order, it has not shipped yet",
    "medium": "Hi, I ordered a pair of running shoes last Tuesday and the tracking page has not changed since "
    "Thursday, can you tell me where the parcel is?",
    "long": "Hello, I placed an order last week with order number 12345678 and it still has not arrived, could you "
    "please tell me how I can track it, when it will be delivered to my address, and whether I can change the "
    "delivery address to my office instead because I will not be at home during the day next week?",
}


def chat(length: str = "short") -> Endpoint:
    text = CHAT_MESSAGES[length]
    return Endpoint(
        "chat", "chat-intent", "/v1/chat", f"one {length} message ({len(text.split())} words)",
        lambda _: {"message": text}, lambda _, body: [body["message"]],
    )  # fmt: skip


SEARCH_QUERY = "wireless noise cancelling headphones"


def _search_body(n: int) -> Callable[[Loaded], dict[str, Any]]:
    def body(loaded: Loaded) -> dict[str, Any]:
        ids = sorted(loaded.task.catalogue)
        if len(ids) < n:
            raise SystemExit(f"{loaded.version_dir}: the catalogue has {len(ids)} products, {n} are needed")
        return {"query": SEARCH_QUERY, "candidates": [{"product_id": p} for p in ids[:n]], "k": 10}

    return body


def _search_rows(loaded: Loaded, body: dict[str, Any]) -> list[Any]:
    """The rows :func:`app.tasks.search.task.rank` submits: the query row (bi-encoder: catalogue products are
    stored vectors), or one (query, product) pair per candidate (cross-encoder)."""
    from app.tasks.search.schemas import SearchRequest
    from app.tasks.search.text import single_seq

    task = loaded.task
    req = SearchRequest.model_validate(body)
    (q_tokens,), _ = task.enc.queries([req.query])
    products, _ = task.candidate_products(req.candidates)
    if task.vectors is not None:
        return [(single_seq(q_tokens), False)]
    return [(q_tokens, p, c) for p, c in products]


def search(n: int = 50) -> Endpoint:
    return Endpoint("search", "search-ranker", "/v1/search/rank", f"{n} catalogue candidates", _search_body(n),
                    _search_rows)  # fmt: skip


def _known_customer(loaded: Loaded) -> dict[str, Any]:
    """The first customer (by id) with a stored history of at least 5 products, asking for 10."""
    from app.tasks.base import VersionFiles
    from app.tasks.recommend.state import load_histories

    files = VersionFiles(loaded.version_dir, read_manifest(loaded.version_dir))
    hist = load_histories(files.aux("histories"))
    users = sorted(u for u, items in hist.items() if len(items) >= 5) or sorted(hist)
    if not users:
        raise SystemExit(f"{loaded.version_dir}: no stored customer histories")
    return {"user_id": users[0], "k": 10}


def _recommend_rows(loaded: Loaded, body: dict[str, Any]) -> list[Any]:
    from app.tasks.recommend.schemas import RecommendRequest

    row, _ = loaded.task.validate(RecommendRequest.model_validate(body))
    return [row]


def recommend() -> Endpoint:
    return Endpoint("recommend", "recommend", "/v1/recommend", "a known customer", _known_customer, _recommend_rows)


ENDPOINTS = {"ctr": ctr(), "ctr-columns": ctr_columns(), "chat": chat(), "search": search(), "recommend": recommend()}


def load(version_dir: Path) -> Loaded:
    """The version's runtime and task, built as the service builds them (same factory, settings and files)."""
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
    return Loaded(version_dir, task, task.infer_fn(runtime.infer))


def runtime_call(loaded: Loaded, endpoint: Endpoint, body: dict[str, Any]) -> Callable[[], object]:
    """One request's inference exactly as the service runs it, minus HTTP, validation and batching."""
    rows = endpoint.rows(loaded, body)
    feeds = {k: v for k, v in loaded.task.prepare(rows).items() if not k.startswith("_")}  # as the batcher
    first = loaded.infer(feeds)
    if any(np.asarray(v).shape[0] != len(rows) for v in first.values()):
        raise AssertionError(
            f"{endpoint.name}: the runtime answered {[v.shape for v in first.values()]} for {len(rows)} rows"
        )
    return lambda: loaded.infer(feeds)


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


@dataclass(frozen=True)
class Options:
    """How each measurement runs; ``models`` maps an endpoint to another published model name."""

    seconds: int = 5
    rounds: int = 3
    connections: int = 4
    server_cores: int = 1
    models: tuple[tuple[str, str], ...] = ()
    baseline_checkout: Path | None = None

    def model(self, endpoint: Endpoint) -> str:
        return dict(self.models).get(endpoint.name, endpoint.model)


_E2e = tuple[float, float, float, int, float]
"""One wrk run: good req/s, p99 ms, server CPU ms per request, errors, server cores used."""


@dataclass
class _Series:
    runtime_rps: list[float]
    runtime_cpu: list[float]
    e2e: dict[str, list[_E2e]]  # server ("e2e", "baseline") -> its runs


def _version_dir(repo: Path, model: str, endpoint: str) -> Path:
    versions = list_versions(repo, model)
    if not versions:
        raise SystemExit(f"{repo} has no published {model} version (needed by {endpoint})")
    return repo / model / str(versions[-1])


@dataclass(frozen=True)
class _Case:
    endpoint: Endpoint
    version_dir: Path
    body: dict[str, Any]
    script: Path
    call: Callable[[], object]


def measure_all(endpoints: list[Endpoint], repo: Path, opts: Options, workdir: Path) -> list[dict[str, Any]]:
    """One row per endpoint (shape), all against one server (and the baseline's), rounds interleaved over every
    endpoint and server so background load hits all alike."""
    mine, others = split_cores(opts.server_cores)
    everything = os.sched_getaffinity(0)
    task_models = {e.name: opts.model(e) for e in endpoints if opts.model(e) != e.model}
    env = {"APP_MODEL_REPO": str(repo), "APP_WORKERS": "1", "APP_GRPC_PORT": "0",
           "APP_LOG_LEVEL": "warning", **({"APP_TASK_MODELS": json.dumps(task_models)} if task_models else {})}  # fmt: skip
    loaded: dict[Path, Loaded] = {}
    cases: list[_Case] = []
    os.sched_setaffinity(0, mine)  # the servers inherit the cores they start on
    try:
        for i, e in enumerate(endpoints):
            vdir = _version_dir(repo, opts.model(e), e.name)
            if vdir not in loaded:
                loaded[vdir] = load(vdir)
            body = e.body(loaded[vdir])
            script = wrk.post_script(workdir / f"case{i}.lua", body)
            cases.append(_Case(e, vdir, body, script, runtime_call(loaded[vdir], e, body)))
        with ExitStack() as stack:
            servers = {"e2e": stack.enter_context(server(["-m", "app"], env, workdir / "server.log"))}
            if opts.baseline_checkout is not None:
                servers["baseline"] = stack.enter_context(
                    server(["-m", "app"], env, workdir / "baseline.log", cwd=opts.baseline_checkout.resolve())
                )
            series = [_Series([], [], {s: [] for s in servers}) for _ in cases]
            for _ in range(opts.rounds):
                for case, ser in zip(cases, series, strict=True):
                    os.sched_setaffinity(0, mine)
                    rate, cpu_ms = timed_loop(case.call, len(mine), opts.seconds)
                    ser.runtime_rps.append(rate)
                    ser.runtime_cpu.append(cpu_ms)
                    os.sched_setaffinity(0, others)  # wrk inherits these
                    for name, (url, pid) in servers.items():
                        s = run_wrk(url + case.endpoint.path, case.script, opts.connections, opts.seconds, pid)
                        cpu = s.cores * 1e3 / s.wrk.rps if s.wrk.rps else float("nan")
                        ser.e2e[name].append((s.wrk.good_rps, s.wrk.p99_ms, cpu, s.wrk.errors, s.cores))
    finally:
        os.sched_setaffinity(0, everything)
    return [_row(c, s, opts, mine) for c, s in zip(cases, series, strict=True)]


def _row(case: _Case, ser: _Series, opts: Options, cores: set[int]) -> dict[str, Any]:
    med = statistics.median
    rt = med(ser.runtime_rps)
    e2e = ser.e2e["e2e"]
    rps = med(x[0] for x in e2e)
    row: dict[str, Any] = {
        "endpoint": case.endpoint.name,
        "path": case.endpoint.path,
        "shape": case.endpoint.shape,
        "version": str(case.version_dir),
        "server_cores": sorted(cores),
        "runtime_rps": rt,
        "e2e_rps": rps,
        "fraction_of_runtime": rps / rt if rt else 0.0,
        "e2e_p99_ms": med(x[1] for x in e2e),
        "runtime_cpu_ms_per_request": med(ser.runtime_cpu),
        "e2e_cpu_ms_per_request": med(x[2] for x in e2e),
        "cpu_fraction_of_runtime": med(ser.runtime_cpu) / med(x[2] for x in e2e),
        "errors": sum(x[3] for x in e2e),
        "server_cpu_cores": med(x[4] for x in e2e),
        "rounds": opts.rounds,
        "runtime_rps_rounds": ser.runtime_rps,
        "e2e_rps_rounds": [x[0] for x in e2e],
        "loadavg": os.getloadavg(),
    }
    if "baseline" in ser.e2e:
        base = ser.e2e["baseline"]
        b_rps = med(x[0] for x in base)
        row.update({
            "baseline_checkout": str(opts.baseline_checkout), "baseline_e2e_rps": b_rps,
            "baseline_fraction_of_runtime": b_rps / rt if rt else 0.0, "baseline_e2e_p99_ms": med(x[1] for x in base),
            "baseline_e2e_cpu_ms_per_request": med(x[2] for x in base), "baseline_errors": sum(x[3] for x in base),
            "baseline_cpu_fraction_of_runtime": med(ser.runtime_cpu) / med(x[2] for x in base),
            "baseline_e2e_rps_rounds": [x[0] for x in base],
        })  # fmt: skip
    return row


def render(rows: list[dict[str, Any]]) -> str:
    base = any("baseline_e2e_rps" in r for r in rows)
    head = ("| endpoint | shape | runtime-only req/s | end-to-end req/s | fraction | e2e p99 ms | errors |"
            " CPU ms/req runtime-only | CPU ms/req end-to-end | CPU fraction |")  # fmt: skip
    if base:
        head += " baseline req/s | baseline fraction | baseline p99 ms | baseline CPU ms/req | baseline CPU fraction |"
    lines = [head, "|---|---|" + "---:|" * (head.count("|") - 3)]
    for r in rows:
        line = (f"| {r['endpoint']} | {r['shape']} | {r['runtime_rps']:,.0f} | {r['e2e_rps']:,.0f} | "
                f"{r['fraction_of_runtime']:.0%} | {r['e2e_p99_ms']:.1f} | {r['errors']} | "
                f"{r['runtime_cpu_ms_per_request']:.2f} | {r['e2e_cpu_ms_per_request']:.2f} | "
                f"{r['cpu_fraction_of_runtime']:.0%} |")  # fmt: skip
        if "baseline_e2e_rps" in r:
            line += (f" {r['baseline_e2e_rps']:,.0f} | {r['baseline_fraction_of_runtime']:.0%} | "
                     f"{r['baseline_e2e_p99_ms']:.1f} | {r['baseline_e2e_cpu_ms_per_request']:.2f} | "
                     f"{r['baseline_cpu_fraction_of_runtime']:.0%} |")  # fmt: skip
        lines.append(line)
    return "\n".join(lines)


def add_common(p: argparse.ArgumentParser) -> None:
    """The options :mod:`loadtest.limits` and :mod:`loadtest.cost_growth` share."""
    p.add_argument("--repo", type=Path, help="model repository (default: publish the CTR test fixture)")
    p.add_argument("--seconds", type=int, default=5, help="per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=4, help="wrk connections (more only queues: one core)")
    p.add_argument("--server-cores", type=int, default=1, help="cores for the server and the runtime-only loop")
    p.add_argument("--model", action="append", default=[], metavar="ENDPOINT=NAME",
                   help="serve ENDPOINT from another published model, e.g. recommend=recommend-ci")  # fmt: skip
    p.add_argument("--baseline-checkout", type=Path, help="also measure this checkout's server, interleaved")
    p.add_argument("--json", type=Path, help="write the rows here")


def options(args: argparse.Namespace) -> Options:
    pairs = [m.split("=", 1) for m in args.model]
    if any(len(p) != 2 or p[0] not in ENDPOINTS for p in pairs):
        raise SystemExit(f"--model takes ENDPOINT=NAME with ENDPOINT among {sorted(ENDPOINTS)}, got {args.model}")
    return Options(args.seconds, args.rounds, args.connections, args.server_cores,
                   tuple((k, v) for k, v in pairs), args.baseline_checkout)  # fmt: skip


def repository(repo: Path | None, work: Path) -> Path:
    """``repo``, or the CTR test fixture published into ``work``."""
    if repo is not None:
        return repo
    from loadtest.bench_ctr import prepare

    return prepare(None, work)[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.limits", description=__doc__.split("\n\n")[0])
    add_common(p)
    p.add_argument("--endpoints", nargs="*", choices=list(ENDPOINTS),
                   help="default: all with --repo, else ctr and ctr-columns")  # fmt: skip
    args = p.parse_args(argv)
    opts = options(args)
    with tempfile.TemporaryDirectory(prefix="limits-") as tmp:
        work = Path(tmp)
        repo = repository(args.repo, work)
        names = args.endpoints or (list(ENDPOINTS) if args.repo else ["ctr", "ctr-columns"])
        rows = measure_all([ENDPOINTS[e] for e in names], repo, opts, work)
    print(render(rows))
    print(f"load average {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
