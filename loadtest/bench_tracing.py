"""Cost of tracing on 1-row CTR requests: tracing off, on at the given sampling ratios (1 % by default), and
(optionally) another checkout.

One single-worker server per variant runs side by side on the same published version; ``wrk`` drives
``POST /v1/ads/ctr`` with a 1-row body against each in turn, the order rotated every round so background load
hits all alike, and the medians over ``--runs`` rounds are printed with their ratio to "tracing off". The traced
variant exports over OTLP/HTTP to a receiver in this process that answers every export (a real collector's cost
is outside the server).

Run from the repository root::

    python -m loadtest.bench_tracing --runs 7 --duration 8
    python -m loadtest.bench_tracing --ratios 0.01,1   # a traced server per sampling ratio (1 = every request)
    python -m loadtest.bench_tracing --baseline-checkout ../main   # adds that checkout's server (tracing absent)
    python -m loadtest.bench_tracing --aa   # adds a second tracing-off server: how far two identical servers differ
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from loadtest.bench_ctr import bodies_for, prepare, server
from loadtest.harness import wrk
from loadtest.peers.measure import Sample, render, run_wrk, summarize

OFF = "tracing off"


class _Sink(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports (an empty protobuf reply is a valid ``ExportTraceServiceResponse``), keeping the
    connection open between exports as a collector does."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # readiness of a receiver run with --sink
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _ratios(text: str) -> list[float]:
    ratios = [float(r) for r in text.split(",")]
    if not all(0 <= r <= 1 for r in ratios):
        raise argparse.ArgumentTypeError(f"sampling ratios are 0..1, got {text}")
    return ratios


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_tracing", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--ratios", type=_ratios, default=[0.01], help="sampling ratios, one traced server each (0.01,1)")
    p.add_argument("--baseline-checkout", type=Path, help="another checkout whose server is measured as well")
    p.add_argument("--aa", action="store_true", help="a second tracing-off server: the spread between processes")
    p.add_argument("--sink", type=int, metavar="PORT", help="only run the OTLP receiver on PORT (until killed)")
    args = p.parse_args(argv)
    if args.sink is not None:
        ThreadingHTTPServer(("127.0.0.1", args.sink), _Sink).serve_forever()
        return

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        repo, _ = prepare(None, work)
        script = wrk.post_script(work / "post.lua", bodies_for([1])[1])
        common = {"MODEL_REPO": str(repo), "APP_WORKERS": "1", "APP_GRPC_ENABLED": "false", "APP_LOG_LEVEL": "warning"}
        endpoint = f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"
        traced = {"APP_TRACING_ENABLED": "true", "APP_TRACING_ENDPOINT": endpoint}
        variants: dict[str, tuple[dict[str, str], Path | None]] = {OFF: ({}, None)}
        if args.aa:
            variants[f"{OFF} (A/A)"] = ({}, None)
        for ratio in args.ratios:
            variants[f"tracing on, {ratio:.0%} sampled"] = ({**traced, "APP_TRACING_SAMPLE_RATIO": str(ratio)}, None)
        if args.baseline_checkout is not None:
            variants[f"checkout {args.baseline_checkout.name}"] = ({}, args.baseline_checkout.resolve())
        servers = {}
        for i, (name, (env, cwd)) in enumerate(variants.items()):
            servers[name] = stack.enter_context(
                server(["-m", "app"], {**common, **env}, work / f"server-{i}.log", cwd=cwd)
            )
        samples: dict[str, list[Sample]] = {name: [] for name in variants}
        names = list(variants)
        for r in range(args.runs):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                url, pid = servers[name]
                samples[name].append(run_wrk(url + "/v1/ads/ctr", script, args.connections, args.duration, pid))
        rows = [summarize(name, s) for name, s in samples.items()]
        paired = {
            name: [a.wrk.rps / b.wrk.rps for a, b in zip(s, samples[OFF], strict=True)] for name, s in samples.items()
        }
        load = os.getloadavg()
        header = (
            f"1-row `POST /v1/ads/ctr`, 1 worker each, wrk -c{args.connections} {args.duration}s x {args.runs} "
            f"interleaved rounds; load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
        )
        print(render(rows, header, reference=OFF))
        print("\nreq/s ÷ tracing off's in the same run, median (min … max):")
        for name, ratios in paired.items():
            print(f"- {name}: {statistics.median(ratios):.3f} ({min(ratios):.3f} … {max(ratios):.3f})")
    sink.shutdown()


if __name__ == "__main__":
    main()
