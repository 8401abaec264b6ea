"""Where tracing's cost per request goes, by Python function: the same in-process 1-row CTR blocks as
:mod:`loadtest.bench_tracing_cpu` (tracing off, on at each ``--ratios`` sampling ratio, one provider per traced
variant exporting over OTLP/HTTP to a receiver in another process), each block profiled with ``cProfile`` on
every thread that runs request work (the event loop, the batch worker threads, the span processor's export),
timed by each thread's CPU clock so that other processes' load does not count.

The table lists the functions whose CPU time (own, and inclusive) or call count per request differs most
between two variants, summed over ``--runs`` blocks of ``--requests`` requests each (the order rotated). The
profiler's own overhead inflates every function with many calls alike, so read the calls per request first and
the times as relative.

Run from the repository root::

    python -m loadtest.profile_tracing --requests 10000 --runs 2
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loadtest.bench_ctr import bodies_for, prepare
from loadtest.bench_tracing_cpu import OFF, _block, _ratios, _until_serving
from loadtest.harness.procs import free_port, http_ok, running

Key = tuple[str, int, str]
"""(file, line, function) as pstats names a function."""


class Profiles:
    """One ``cProfile`` per thread, enabled only inside :meth:`block` (worker threads: only inside the wrapped
    calls, since a profiler can only be switched on by the thread it profiles)."""

    def __init__(self) -> None:
        self.active = False
        self._local = threading.local()
        self._all: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _mine(self) -> cProfile.Profile:
        prof: cProfile.Profile | None = getattr(self._local, "prof", None)
        if prof is None:
            prof = cProfile.Profile(time.thread_time_ns, 1e-9)
            self._local.prof = prof
            with self._lock:
                self._all.append(prof)
        return prof

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` profiled when called from a worker thread during a block (the event loop is profiled whole)."""

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not self.active or threading.current_thread() is threading.main_thread():
                return fn(*args, **kwargs)
            prof = self._mine()
            prof.enable()
            try:
                return fn(*args, **kwargs)
            finally:
                prof.disable()

        return wrapped

    @contextmanager
    def block(self) -> Iterator[None]:
        main = self._mine()
        self.active = True
        main.enable()
        try:
            yield
        finally:
            main.disable()
            self.active = False

    def take(self) -> dict[Key, tuple[int, float, float]]:
        """(calls, own s, inclusive s) per function since the last take, all threads together."""
        out: dict[Key, tuple[int, float, float]] = {}
        with self._lock:
            profs, self._all = self._all, []
        self._local = threading.local()
        for prof in profs:
            prof.create_stats()
            for key, (_, calls, own, incl, _) in prof.stats.items():  # type: ignore[attr-defined]
                c, o, i = out.get(key, (0, 0.0, 0.0))
                out[key] = (c + calls, o + own, i + incl)
        return out


def _instrument(profiles: Profiles) -> None:
    """Profile the worker-thread entry points: the batcher's run and the span processor's export."""
    from opentelemetry.sdk._shared_internal import BatchProcessor

    from app.batching import DynamicBatcher

    DynamicBatcher._run = profiles.wrap(DynamicBatcher._run)  # type: ignore[method-assign]
    BatchProcessor._export = profiles.wrap(BatchProcessor._export)  # type: ignore[method-assign]


async def _measure(args: argparse.Namespace, repo: Path, endpoint: str) -> dict[str, dict[Key, list[float]]]:
    from asgi_lifespan import LifespanManager

    from app import tracing
    from app.main import create_app
    from app.settings import Settings

    profiles = Profiles()
    _instrument(profiles)
    settings = Settings(
        model_repo=repo, grpc_enabled=False, log_level="warning", queue_budget_ms=None, default_timeout_ms=None
    )
    app = create_app(settings)
    path, body = "/v1/ads/ctr", json.dumps(bodies_for([1])[1]).encode()
    variants: dict[str, tuple[Any, float]] = {OFF: (None, 0.0)}
    for ratio in args.ratios:
        variants[f"tracing on, {ratio:.0%} sampled"] = (tracing.otlp_provider("shopinfer-profile", endpoint), ratio)
    totals: dict[str, dict[Key, list[float]]] = {name: {} for name in variants}
    try:
        async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60):
            await _until_serving(app, path, body)
            for provider, ratio in variants.values():
                await _run(app, path, body, args.warmup, args.concurrency, provider, ratio, None)
            gc.freeze()
            names = list(variants)
            for r in range(args.runs):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    await _run(app, path, body, args.requests, args.concurrency, *variants[name], profiles)
                    for key, (calls, own, incl) in profiles.take().items():
                        acc = totals[name].setdefault(key, [0.0, 0.0, 0.0])
                        acc[0] += calls
                        acc[1] += own
                        acc[2] += incl
                print(f"run {r + 1}/{args.runs}", file=sys.stderr, flush=True)
    finally:
        for provider, _ in variants.values():
            if provider is not None:
                provider.shutdown()
    return totals


async def _run(
    app: Any, path: str, body: bytes, requests: int, concurrency: int, provider: Any, ratio: float, profiles: Any
) -> None:
    from app import tracing

    if provider is not None:
        tracing.install(provider, ratio)
    try:
        if profiles is None:
            await _block(app, path, body, requests, concurrency)
            if provider is not None:
                tracing.flush()
            return
        with profiles.block():
            await _block(app, path, body, requests, concurrency)
            if provider is not None:
                tracing.flush()
    finally:
        if provider is not None:
            tracing.uninstall()


def _name(key: Key) -> str:
    file, line, fn = key
    for marker in ("site-packages/", "/app/", "/loadtest/", "/lib/python3"):
        if marker in file:
            file = marker.strip("/").split("/")[-1] + "/" + file.split(marker, 1)[1]
            break
    return f"{fn} ({file}:{line})" if line else fn


def diff(a: dict[Key, list[float]], b: dict[Key, list[float]], per: int, top: int) -> str:
    """Markdown tables of the ``top`` functions by difference of own time, inclusive time and calls (a − b)."""
    keys = set(a) | set(b)
    zero = [0.0, 0.0, 0.0]
    rows = {k: [x - y for x, y in zip(a.get(k, zero), b.get(k, zero), strict=True)] for k in keys}
    out = []
    for col, title in ((1, "own CPU µs"), (2, "inclusive CPU µs"), (0, "calls")):
        out += [f"\nby {title} per request (difference, then both sides):\n",
                f"| function | Δ {title} | Δ calls | {title} (a) | {title} (b) |", "|---|---:|---:|---:|---:|"]  # fmt: skip
        scale = 1 if col == 0 else 1e6
        for k in sorted(keys, key=lambda k: -abs(rows[k][col]))[:top]:
            va, vb = a.get(k, zero)[col] / per * scale, b.get(k, zero)[col] / per * scale
            dc = rows[k][0] / per
            out.append(f"| `{_name(k)}` | {rows[k][col] / per * scale:+.3f} | {dc:+.4f} | {va:.3f} | {vb:.3f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.profile_tracing", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=2, help="profiled blocks per variant (order rotated)")
    p.add_argument("--requests", type=int, default=10000, help="requests per block")
    p.add_argument("--warmup", type=int, default=500, help="unprofiled requests per variant first")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--ratios", type=_ratios, default=[0, 0.01], help="sampling ratios, one traced variant each")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--repo", type=Path, help="model repository (default: publish the fixture model)")
    p.add_argument("--save", type=Path, help="also write every function's totals per variant to this JSON file")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        repo = args.repo or prepare(None, Path(tmp))[0]
        port = free_port()
        sink = [sys.executable, "-m", "loadtest.bench_tracing", "--sink", str(port)]
        with running(sink, ready=lambda: http_ok(f"http://127.0.0.1:{port}/"), what="OTLP receiver"):
            totals = asyncio.run(_measure(args, repo, f"http://127.0.0.1:{port}/v1/traces"))
    per = args.runs * args.requests
    names = list(totals)
    if args.save is not None:
        rows = {n: [[_name(k), *v] for k, v in t.items()] for n, t in totals.items()}
        args.save.write_text(json.dumps({"requests": per, "variants": rows}))
    print(f"{args.runs} blocks of {args.requests} 1-row requests per variant, {args.concurrency} in flight")
    for name in names:
        cpu = sum(v[1] for v in totals[name].values()) / per * 1e6
        calls = sum(v[0] for v in totals[name].values()) / per
        print(f"- {name}: {cpu:.1f} profiled CPU µs, {calls:.1f} function calls per request")
    for a, b in zip(names[1:], names[:-1], strict=True):
        print(f"\n### {a} (a) − {b} (b)")
        print(diff(totals[a], totals[b], per, args.top))


if __name__ == "__main__":
    main()
