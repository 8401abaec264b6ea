"""``python -m loadtest.peers_ctr``: ad scoring on this service's JSON ``/v1/ads/ctr`` against Triton + its C++
ONNX Runtime backend serving the same published ``model_raw.onnx`` over binary KServe v2, at several candidate
counts per request.

    python -m loadtest.peers_ctr --repo model_repo --candidates 1,10,100,1000 --json /tmp/peers_ctr.json

Both servers run the same graph: featurization (vocabulary lookups, ``log1p``, standardisation) inside
``model_raw.onnx``, fed the raw fields. Triton gets them as a client that already holds columns would send them:
``dense_raw`` FP64 [N, 13] and ``cat_raw`` BYTES [N, 26] as binary tensor data after a small JSON header
(``Inference-Header-Content-Length``), the answer's ``pctr`` as binary FP32. The service gets the documented JSON
body (``{"context": {}, "candidates": [{"ad_id", "features": {...}}]}``) and, as a second row of the table,
the same candidates as the columnar body (``{"ad_ids": [...], "columns": {...}}``), and validates, featurizes and
answers them in JSON. Triton 2.51 comes from the PyTriton wheel and its C++ backend is built from public sources
(:mod:`loadtest.peers.triton_ort`), with 1 intra-op thread and dynamic batching without delay
(``max_batch_size`` = the largest request). Before timing, both must answer the same scores for every body.

Figures per server and body: requests/s and candidates/s (wrk, ``-c`` connections, medians over interleaved
rounds), p99, and server CPU per request (process-tree CPU seconds / answered requests). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.harness import wrk
from loadtest.harness.procs import free_port, http_ok, python_server, spawn, stop
from loadtest.peers.envs import ensure, peer_envs
from loadtest.peers.measure import Sample, run_wrk
from loadtest.peers.targets import ROOT, triton_dist
from loadtest.peers.triton_ort import DEFAULT_HEADER, DEFAULT_SRC, Sources, build, install

MODEL = "ctr_raw"
ROWS, COLUMNS = "shopinfer JSON /v1/ads/ctr", "shopinfer JSON columns /v1/ads/ctr"
TRITON = "triton-ort binary KServe v2"
CONFIG = """name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch}
input [
  {{ name: "dense_raw" data_type: TYPE_FP64 dims: [ {dense} ] }},
  {{ name: "cat_raw" data_type: TYPE_STRING dims: [ {cat} ] }}
]
output [ {{ name: "pctr" data_type: TYPE_FP32 dims: [ 1 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "intra_op_thread_count" value: {{ string_value: "1" }} }}
parameters {{ key: "inter_op_thread_count" value: {{ string_value: "1" }} }}
"""


def triton_repo(raw_model: Path, root: Path, dense: int, cat: int, max_batch: int) -> Path:
    """``<root>/ctr_raw/{config.pbtxt, 1/model.onnx}``: the published raw-feature graph, unchanged."""
    d = root / MODEL
    (d / "1").mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(CONFIG.format(name=MODEL, max_batch=max_batch, dense=dense, cat=cat))
    target = d / "1" / "model.onnx"
    target.unlink(missing_ok=True)
    target.symlink_to(raw_model.resolve())
    return root


def binary_request(dense_raw: np.ndarray, cat_raw: np.ndarray) -> tuple[bytes, int]:
    """KServe v2 binary tensor request: JSON header, then FP64 little-endian and BYTES (4-byte length + bytes)."""
    dense = np.ascontiguousarray(dense_raw, dtype="<f8").tobytes()
    cat = b"".join(struct.pack("<I", len(b)) + b for b in (str(s).encode() for s in cat_raw.reshape(-1)))
    header = json.dumps({
        "inputs": [
            {"name": "dense_raw", "shape": list(dense_raw.shape), "datatype": "FP64",
             "parameters": {"binary_data_size": len(dense)}},
            {"name": "cat_raw", "shape": list(cat_raw.shape), "datatype": "BYTES",
             "parameters": {"binary_data_size": len(cat)}},
        ],
        "outputs": [{"name": "pctr", "parameters": {"binary_data": True}}],
    }).encode()  # fmt: skip
    return header + dense + cat, len(header)


def binary_scores(answer: bytes, header_len: int) -> np.ndarray:
    """``pctr`` from a binary KServe v2 answer."""
    header = json.loads(answer[:header_len])
    (out,) = header["outputs"]
    return np.frombuffer(answer[header_len : header_len + out["parameters"]["binary_data_size"]], "<f4")


def bytes_script(script: Path, body: bytes, headers: dict[str, str]) -> Path:
    """A wrk script POSTing the bytes of ``body`` (read from a file beside it) with ``headers``."""
    body_file = script.with_suffix(".bin")
    body_file.write_bytes(body)
    hdrs = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script.write_text(f'wrk.method = "POST"\n{hdrs}local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*a")\n'
                      "f:close()\n")  # fmt: skip
    return script


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read(), dict(r.headers)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.peers_ctr", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, required=True, help="model repository with a published ad-ctr version")
    p.add_argument("--model", default="ad-ctr")
    p.add_argument("--candidates", default="1,10,100,1000", help="comma list of candidates per request")
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    p.add_argument("--runs", type=int, default=3, help="interleaved rounds; medians")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--service", default="", metavar="KEY=VALUE[,KEY=VALUE]", help="settings for this service")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "peers", help="venvs and Triton binaries")
    p.add_argument("--triton-src", default=DEFAULT_SRC, help="see python -m loadtest.peers --help")
    p.add_argument("--ort-header", default=DEFAULT_HEADER, help="see python -m loadtest.peers --help")
    p.add_argument("--json", type=Path, help="one row per server, body and round")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import onnxruntime

    from app.repository import list_versions, read_manifest
    from app.tasks.base import VersionFiles
    from app.tasks.ctr.columns import to_columns
    from app.tasks.ctr.raw import RAW_MODEL_FILE, raw_arrays
    from app.tasks.ctr.vocab import load_featurizer
    from loadtest.limits import ctr_body

    args = _args(argv)
    sizes = [int(x) for x in args.candidates.split(",") if x]
    versions = list_versions(args.repo, args.model)
    if not versions:
        raise SystemExit(f"{args.repo} has no published {args.model} version")
    vdir = args.repo / args.model / str(versions[-1])
    if not (vdir / RAW_MODEL_FILE).is_file():
        raise SystemExit(f"{vdir} has no {RAW_MODEL_FILE} (featurization in the graph) to serve on Triton")
    featurizer = load_featurizer(VersionFiles(vdir, read_manifest(vdir)).state())
    dense_n, cat_n = len(featurizer.dense_columns), len(featurizer.categorical_columns)

    env = peer_envs()["pytriton"]
    cache = args.cache.resolve()
    ensure(env, cache, cache / "install.log")
    backend = build(cache, env.site_packages(cache), onnxruntime.__version__, Sources(args.triton_src, args.ort_header))
    work = Path(tempfile.mkdtemp(prefix="peers-ctr-"))
    dist = triton_dist(env, cache)
    libs = env.site_packages(cache) / "nvidia_pytriton.libs"
    install(work / "triton", backend, libs)
    repo = triton_repo(vdir / RAW_MODEL_FILE, work / "triton-repo", dense_n, cat_n, max(sizes))

    cases: dict[int, dict[str, Any]] = {}
    for n in sizes:
        body = ctr_body(n)
        rows = [{**body["context"], **c["features"]} for c in body["candidates"]]
        arrays = raw_arrays(rows, featurizer)
        bin_body, hlen = binary_request(arrays["dense_raw"], arrays["cat_raw"])
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(hlen)}
        cases[n] = {"json": json.dumps(body).encode(), "cols": json.dumps(to_columns(body)).encode(),
                    "bin": bin_body, "headers": headers, "json_script": work / f"json{n}.lua",
                    "cols_script": work / f"cols{n}.lua", "bin_script": work / f"bin{n}.lua"}  # fmt: skip
        wrk.post_script(cases[n]["json_script"], body)
        wrk.post_script(cases[n]["cols_script"], to_columns(body))
        bytes_script(cases[n]["bin_script"], bin_body, headers)

    port = free_port()
    argv_t = [str(dist / "bin" / "tritonserver"), f"--model-repository={repo}",
              f"--backend-directory={work / 'triton' / 'backends'}", "--http-address=127.0.0.1", f"--http-port={port}",
              "--allow-grpc=false", "--allow-metrics=false", "--log-verbose=0"]  # fmt: skip
    ld = ":".join([str(libs), str(work / "triton" / "backends" / "onnxruntime"), os.environ.get("LD_LIBRARY_PATH", "")])
    t_url = f"http://127.0.0.1:{port}"
    service_env = {"APP_MODEL_REPO": str(args.repo), "APP_GRPC_PORT": "0", "APP_LOG_LEVEL": "warning",
                   "APP_REQUIRED_MODELS": args.model,
                   **dict(kv.split("=", 1) for kv in args.service.split(",") if kv)}  # fmt: skip
    samples: dict[tuple[str, int], list[Sample]] = {}
    with ExitStack() as stack:
        tproc = spawn(argv_t, ready=lambda: http_ok(f"{t_url}/v2/models/{MODEL}/ready"), what="triton ready",
                      log=work / "triton.log", env={**os.environ, "LD_LIBRARY_PATH": ld}, timeout_s=300,
                      new_session=True)  # fmt: skip
        stack.callback(stop, tproc, 30, group=True)
        s_url, s_pid = stack.enter_context(python_server(["-m", "app"], service_env, work / "service.log"))
        servers = {ROWS: (f"{s_url}/v1/ads/ctr", s_pid, "json_script"),
                   COLUMNS: (f"{s_url}/v1/ads/ctr", s_pid, "cols_script"),
                   TRITON: (f"{t_url}/v2/models/{MODEL}/infer", tproc.pid, "bin_script")}  # fmt: skip
        for n, c in cases.items():  # same scores from all, or the comparison means nothing
            theirs_raw, hdr = _post(servers[TRITON][0], c["bin"], c["headers"])
            theirs = binary_scores(theirs_raw, int(hdr["Inference-Header-Content-Length"]))
            for body in (c["json"], c["cols"]):
                ours, _ = _post(servers[ROWS][0], body, {"Content-Type": "application/json"})
                mine = np.array([s["pctr"] for s in json.loads(ours)["scores"]], np.float32)
                if mine.shape != theirs.shape or not np.allclose(mine, theirs, atol=1e-5):
                    raise SystemExit(f"{n} candidates: the servers disagree: {mine[:5]} vs {theirs[:5]}")
        for c in cases.values():  # warm-up
            for url, pid, script in servers.values():
                run_wrk(url, c[script], args.connections, 1, pid)
        for r in range(args.runs):
            for n, c in cases.items():
                for name, (url, pid, key) in servers.items():
                    script = c[key]
                    smp = run_wrk(url, script, args.connections, args.duration, pid)
                    samples.setdefault((name, n), []).append(smp)
                    print(f"round {r + 1} {n:>5} candidates {name}: {smp.wrk.good_rps:,.0f} req/s "
                          f"p99 {smp.wrk.p99_ms:.1f} ms {smp.cores:.2f} cores", file=sys.stderr)  # fmt: skip
    rows = _rows(samples)
    print(render(rows, sizes, args))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def _rows(samples: dict[tuple[str, int], list[Sample]]) -> list[dict[str, Any]]:
    return [
        {"label": name, "candidates": n, "round": i + 1, "rps": s.wrk.good_rps, "candidates_per_s": s.wrk.good_rps * n,
         "p99_ms": s.wrk.p99_ms, "non_2xx": s.wrk.errors, "server_cores": s.cores,
         "cpu_us_per_req": 1e6 * s.cores / s.wrk.rps if s.wrk.rps else None}
        for (name, n), smp in samples.items()
        for i, s in enumerate(smp)
    ]  # fmt: skip


def render(rows: list[dict[str, Any]], sizes: list[int], args: argparse.Namespace) -> str:
    med = statistics.median
    lines = [f"`wrk -t1 -c{args.connections} -d{args.duration}s`, {args.runs} interleaved repetitions (medians); "
             f"load average {os.getloadavg()[0]:.1f}", "",
             "| candidates | server | req/s | candidates/s | p99 ms | server CPU µs/req | errors | × triton-ort |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for n in sizes:
        by: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if r["candidates"] == n:
                by.setdefault(r["label"], []).append(r)
        ref = med(r["rps"] for r in by.get(TRITON, [{"rps": 0.0}]))
        for label, rs in by.items():
            rps = med(r["rps"] for r in rs)
            cpu = med(r["cpu_us_per_req"] or float("nan") for r in rs)
            ratio = f"{rps / ref:.2f}" if ref else "-"
            lines.append(f"| {n:,} | {label} | {rps:,.0f} | {rps * n:,.0f} | {med(r['p99_ms'] for r in rs):.1f} | "
                         f"{cpu:,.0f} | {sum(r['non_2xx'] for r in rs)} | {ratio} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
