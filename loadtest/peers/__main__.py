"""``python -m loadtest.peers``: this service vs Triton + python backend, PyTriton and MLServer, side by side.

Installs the peers into their own venvs under ``--cache`` (first run only: nvidia-pytriton==0.7.0, which
carries tritonserver 2.51 and the python-backend stubs; mlserver==1.7.1; each with this process's onnxruntime),
serves one ONNX MLP 13->512->256->1 from all of them (ORT 1 intra-op thread, max batch 64, no queue delay),
and drives 1-row KServe v2 JSON requests with ``wrk -t1 -c32``, rounds interleaved server by server so
background load hits all alike. Prints medians and, with ``--docs``, rewrites the marked section of
docs/benchmarks.md. A benchmark, not a test: it takes several minutes and the network to PyPI on first run.

    python -m loadtest.peers                              # 3 rounds x 10 s, all peers
    python -m loadtest.peers --docs docs/benchmarks.md    # ... and write the table there
    python -m loadtest.peers --peers triton --runs 1 --duration 5 --service APP_WORKERS=1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from loadtest.harness import wrk
from loadtest.peers import measure, targets
from loadtest.peers import model as m
from loadtest.peers.envs import ensure, ort_pin, peer_envs
from loadtest.peers.targets import PEERS, ROOT, Server, service
from loadtest.peers.triton_ort import DEFAULT_HEADER, DEFAULT_SRC, BuildError, Sources

LABELS = {"triton-ort": "triton-ort", "triton": "triton-python", "pytriton": "pytriton", "mlserver": "mlserver"}


def _env(variant: str) -> dict[str, str]:
    """``"APP_WORKERS=1,APP_X=2"`` -> ``{"APP_WORKERS": "1", "APP_X": "2"}``."""
    pairs = [kv.split("=", 1) for kv in variant.split(",") if kv]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"--service takes KEY=VALUE[,KEY=VALUE], got {variant!r}")
    return {k: v for k, v in pairs}


def _ensure_wrk() -> None:
    """wrk from Debian when missing (root only); otherwise a clear message."""
    if shutil.which("wrk"):
        return
    if shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed and could not be installed: apt-get install -y wrk")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.peers", description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "peers", help="venvs and Triton binaries")
    p.add_argument("--peers", default="triton-ort,triton,pytriton,mlserver", help="comma list among " + ",".join(PEERS))
    p.add_argument(
        "--triton-src",
        default=DEFAULT_SRC,
        help="where to clone Triton's repositories from (r24.10); {name} is the repository's name",
    )
    p.add_argument(
        "--ort-header",
        default=DEFAULT_HEADER,
        help="REPO@REV:PATH of onnxruntime_c_api.h for the C++ backend ({ort}: this onnxruntime's version)",
    )
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--runs", type=int, default=3, help="interleaved rounds; the table shows medians")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load per server first")
    p.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="also run a variant of this service with these settings, e.g. APP_WORKERS=1 (repeatable: one row "
        "each, beside the row with the service's defaults)",
    )
    p.add_argument("--docs", type=Path, help="rewrite the peers section of this markdown file")
    p.add_argument("--json", type=Path, help="also write one row per server and round here (label, rps, p99_ms, ...)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise SystemExit(f"unknown peers {sorted(unknown)}; choose among {sorted(PEERS)}")
    _ensure_wrk()
    targets.SOURCES = Sources(args.triton_src, args.ort_header)
    envs = peer_envs()
    cache = args.cache.resolve()
    for venv in sorted({PEERS[p][0] for p in peers}):
        print(f"venv {venv}: {' '.join(envs[venv].requirements)}", file=sys.stderr)
        ensure(envs[venv], cache, cache / "install.log")
    model = m.build_mlp()
    work = Path(tempfile.mkdtemp(prefix="peers-"))
    body = work / "body.json"
    body.write_text(json.dumps(m.request_body()))
    expected = m.reference_output(model)
    script = wrk.post_script(work / "post.lua", body.read_text())
    variants = ["", *args.service]
    servers = [service(model, work, _env(v), v) for v in variants]
    failed: dict[str, str] = {}
    labels = {s.name: "shopinfer" + (f"[{v}]" if v else "") for s, v in zip(servers, variants, strict=True)}
    for p in peers:
        try:
            peer = PEERS[p][1](model, work, envs[PEERS[p][0]], cache)
        except (BuildError, OSError, subprocess.SubprocessError) as e:
            failed[p] = str(e)
            print(f"FAILED to prepare {p}: {e}", file=sys.stderr)
            continue
        servers.append(peer)
        labels[peer.name] = LABELS[p]
    samples: dict[str, list[measure.Sample]] = {}
    try:
        for s in servers:
            try:
                s.start()
                s.check(body.read_bytes(), expected)
                samples[s.name] = []
                print(f"ready: {s.name} at {s.url}", file=sys.stderr)
            except (RuntimeError, TimeoutError, OSError) as e:
                failed[s.name] = str(e)
                print(f"FAILED to start {s.name}: {e}", file=sys.stderr)
                s.stop()
        live = [s for s in servers if s.name in samples]
        for s in live:  # warm-up: JIT-free but caches, batch-size warm-up, connection pools
            _run(s, script, args.connections, args.warmup)
        for r in range(args.runs):
            for s in list(live):
                try:
                    smp = _run_or_restart(s, script, args.connections, args.duration, body.read_bytes(), expected)
                except (RuntimeError, TimeoutError, OSError, ValueError, subprocess.SubprocessError) as e:
                    failed[s.name] = f"round {r + 1}: {e}"
                    print(f"FAILED {s.name}: {e}", file=sys.stderr)
                    live.remove(s)
                    continue
                samples[s.name].append(smp)
                print(f"round {r + 1}/{args.runs} {s.name}: {smp.wrk.rps:,.0f} req/s p99 {smp.wrk.p99_ms:.1f} ms "
                      f"{smp.cores:.2f} cores", file=sys.stderr)  # fmt: skip
    finally:
        for s in servers:
            s.stop()
    rows = [measure.summarize(name, smp) for name, smp in samples.items() if smp]
    rows.sort(key=lambda r: -r.rps)
    table = measure.render(rows, _header(args), reference=servers[0].name)
    notes = "".join(f"\n\n**{name} did not run**: `{err.strip().splitlines()[-1] if err.strip() else err}`"
                    for name, err in failed.items())  # fmt: skip
    print(table + notes)
    if args.json:
        args.json.write_text(json.dumps(_rows(samples, labels), indent=1))
    if args.docs:
        cmd = " ".join(["python -m loadtest.peers", *(sys.argv[1:] if argv is None else argv)])
        measure.write_section(args.docs, _section(table + notes, args, cmd))
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def _rows(samples: dict[str, list[measure.Sample]], labels: dict[str, str]) -> list[dict[str, object]]:
    """One row per server and round: what ``--json`` writes."""
    return [
        {"label": labels[name], "server": name, "round": i + 1, "rps": s.wrk.rps, "p50_ms": s.wrk.p50_ms,
         "p99_ms": s.wrk.p99_ms, "non_2xx": s.wrk.errors, "server_cores": s.cores,
         "cpu_us_per_req": 1e6 * s.cores / s.wrk.rps if s.wrk.rps else None, "rss_mib": s.rss_mib}
        for name, smp in samples.items()
        for i, s in enumerate(smp)
    ]  # fmt: skip


def _run_or_restart(
    s: Server, script: Path, connections: int, duration: int, body: bytes, expected: float
) -> measure.Sample:
    """One measured run; a server that died meanwhile (e.g. killed from outside) is restarted once."""
    try:
        return _run(s, script, connections, duration)
    except subprocess.CalledProcessError as e:
        assert s.proc is not None
        if s.proc.poll() is None:
            raise RuntimeError(f"wrk failed: {e.stderr or e.stdout}") from None
        print(f"{s.name} exited with {s.proc.returncode} during the run; restarting it once", file=sys.stderr)
        s.start()
        s.check(body, expected)
        _run(s, script, connections, max(1, duration // 3))  # warm-up again
        return _run(s, script, connections, duration)


def _run(s: Server, script: Path, connections: int, duration: int) -> measure.Sample:
    assert s.proc is not None
    return measure.run_wrk(s.infer_url, script, connections, duration, s.proc.pid)


def _header(args: argparse.Namespace) -> str:
    env = "".join(f"; service variant {v}" for v in args.service if v)
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.node()} ({_cpus()}), `wrk -t1 -c{args.connections} "
        f"-d{args.duration}s`, {args.runs} interleaved rounds (medians), 1-row KServe v2 JSON, "
        f"{ort_pin()} 1 intra-op thread, max batch {m.MAX_BATCH}, no queue delay{env}; 1-min load average "
        f"{os.getloadavg()[0]:.1f} at the end (other jobs on the machine show up here)"
    )


def _cpus() -> str:
    return f"{os.cpu_count()} vCPU"


def _section(table: str, args: argparse.Namespace, cmd: str) -> str:
    return f"""## Peer benchmark: the same ONNX model on Triton (C++ and python backends), PyTriton, MLServer and this service

Written by `{cmd}` (about {(args.runs * (1 + 3) * args.duration + 4 * args.warmup) // 60 + 2} minutes; the first run also
installs the peers into `.cache/peers/`). Same MLP 13->512->256->1 (`loadtest/peers/model.py`) everywhere;
"Triton 2.51 + onnxruntime backend (C++)" is the production Triton setup: Triton's C++ ONNX Runtime backend
(`onnxruntime_backend`, branch r24.10), built once by the harness from its public sources against the
`onnxruntime` wheel's own library (`loadtest/peers/triton_ort.py`; needs git, cmake, a C++ compiler and Debian's
`rapidjson-dev` and `googletest`; `--triton-src` and `--ort-header` say where the sources come from), 1 intra-op
thread, dynamic batching without delay. "Triton 2.51 + python backend" runs a `model.py` that calls onnxruntime
(`loadtest/peers/triton_model.py`), MLServer a
small onnxruntime runtime (`loadtest/peers/mlserver_runtime.py`, `max_batch_time` 0 so its adaptive batcher is
off, `parallel_workers` 0). "server cores used" = CPU seconds of the server's whole process tree (from
`/proc/<pid>/stat`) / wall seconds; "CPU µs/req" = cores / req/s, the figure least moved by other load.
wrk shares the machine's vCPUs with the servers. Non-2xx answers are counted, not retried (this service sheds
load with 503 `overloaded` when a request's expected queue time exceeds its budget).

{table}
"""


if __name__ == "__main__":
    raise SystemExit(main())
