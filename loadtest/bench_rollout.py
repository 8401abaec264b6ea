"""Rollout costs, side by side and interleaved (wrk): the same versions served without and with a policy.

* ``hotpath``: 1-row KServe v2 requests to ad-ctr; policy = stable only (the routing lookup on every request).
* ``shadow``: 100-candidate ``/v1/ads/ctr`` requests (and short ``/v1/chat`` messages when the repository holds
  ``chat-intent``); policy = the newest version stable, the one before it shadowed at ``--shadow-rate``.

* ``--broken``: a copy of the newest ad-ctr version with its weights shuffled (same shapes, valid hashes: it
  loads and answers, wrongly) is published into a mirror repository and put on a ``--weight`` canary with a
  ``min_agreement`` limit; ``--duration`` seconds of 100-candidate requests (wrk) run while the rollout summary is
  polled. Prints the requests, failures, the canary's requests and comparisons when it was rolled back, the time
  from the start of the load to the rollback, and the rollback event's reason.

* ``--rate R`` (requests/s, or ``auto``): the shadow cost at the same offered load. Open loop
  (:mod:`loadtest.harness.paced`, wrk2-style: every request due at a fixed time, latency counted from then), the
  no-policy and the shadow server get the same request times; ``auto`` = half of the no-shadow capacity measured
  first (a closed-loop wrk run on the no-policy server). Per arm, medians over ``--runs`` interleaved rounds
  (the order alternates each round): offered and achieved req/s, p50/p99, the client's own send lag, server
  cores, and the shadow samples scored and dropped during the measured runs.

Both servers read the same version folders (symlinked into two temporary repositories, one with the policies).
Prints a table (medians of ``--runs`` interleaved rounds) and, for the shadow run, the comparisons the policy
server scored and dropped (``GET /v2/models/{model}/rollout``).

    python -m loadtest.bench_rollout --repo model_repo --duration 5 --runs 3 --shadow-rate 0.1
    python -m loadtest.bench_rollout --repo model_repo --broken --duration 30 --weight 0.2 --min-requests 200
    python -m loadtest.bench_rollout --repo model_repo --rate auto --duration 10 --runs 3 --shadow-rate 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from app.manifest import Manifest
from app.rollout.policy import set_change, update_policy
from compress.publish import file_info, publish
from loadtest.harness import cpu, paced, wrk
from loadtest.harness.criteo import request_rows
from loadtest.harness.procs import python_server as server
from loadtest.peers.measure import Row, interleaved, summarize

CTR = "ad-ctr"
CHAT = "chat-intent"


def _versions(repo: Path, model: str) -> list[int]:
    d = repo / model
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _mirror(repo: Path, into: Path, models: list[str]) -> Path:
    """A repository of symlinks to ``repo``'s version folders (so a policy can be added without touching it)."""
    for model in models:
        (into / model).mkdir(parents=True)
        for v in _versions(repo, model):
            (into / model / str(v)).symlink_to((repo / model / str(v)).resolve())
    return into


def _criteo() -> Path:
    """The Criteo sample under ``DATA_DIR`` (default: the project's ``../shared/data``)."""
    from compress.config import DEFAULT_DATA_DIR

    return Path(os.environ.get("DATA_DIR") or DEFAULT_DATA_DIR) / "ctr" / "criteo_kaggle_train_10k.txt"


def _v2_body(repo: Path) -> dict[str, Any]:
    manifest = json.loads((repo / CTR / str(_versions(repo, CTR)[-1]) / "manifest.json").read_text())
    inputs = []
    for spec in manifest["inputs"]:
        width = spec["shape"][1]
        zero: Any = 0.0 if spec["dtype"] == "FP32" else 0
        inputs.append({"name": spec["name"], "datatype": spec["dtype"], "shape": [1, width], "data": [zero] * width})
    return {"inputs": inputs}


_WEIGHT_DTYPES = ("float32", "float16", "int8", "uint8")


def _shuffled_copy(src: Path, repo: Path, model: str) -> int:
    """Publish ``src`` into ``repo`` with every weight tensor of the network permuted (float or INT8: a quantized
    version's weights are INT8; the same permutation in ``model.onnx`` and the fused ``model_raw.onnx``; index
    tensors and featurization constants kept): loadable, same shapes, valid hashes, wrong answers. Returns the new
    version number."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    def stage(d: Path, version: int) -> Manifest:
        for f in src.iterdir():
            if f.name != "manifest.json":
                shutil.copyfile(f, d / f.name)
        weights = {i.name for i in onnx.load(str(d / "model.onnx")).graph.initializer}
        for name in ("model.onnx", "model_raw.onnx"):
            if not (d / name).is_file():
                continue
            graph = onnx.load(str(d / name))
            for init in graph.graph.initializer:
                arr = numpy_helper.to_array(init)
                if init.name in weights and arr.dtype in _WEIGHT_DTYPES and arr.size > 1:
                    rng = np.random.default_rng(int.from_bytes(init.name.encode()[:8].ljust(8, b"\0"), "big"))
                    shuffled = rng.permutation(arr.reshape(-1)).reshape(arr.shape)
                    init.CopyFrom(numpy_helper.from_array(shuffled, init.name))
            onnx.save(graph, str(d / name))
        manifest = Manifest.model_validate_json((src / "manifest.json").read_text())
        artifacts = [a.model_copy(update=file_info(d, a.path)) for a in manifest.artifacts]
        aux = [a.model_copy(update=file_info(d, a.path)) for a in manifest.aux_files]
        return manifest.model_copy(update={"version": version, "artifacts": artifacts, "aux_files": aux})

    return publish(repo, model, stage)[0]


def _error_codes(metrics_text: str, model: str = CTR) -> dict[str, int]:
    """Requests answered with an error, by code and version, for ``model``."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, int] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "inference_requests":
            for sm in family.samples:
                lab = sm.labels
                if sm.name.endswith("_total") and lab.get("model") == model and lab.get("outcome") == "error":
                    key = f"{lab['code']} (version {lab['version']})"
                    out[key] = out.get(key, 0) + int(sm.value)
    return out


def broken(args: argparse.Namespace) -> None:
    """A shuffled-weights canary under load: when it is rolled back, with how many failed requests, and why."""
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-broken-"))
    repo = _mirror(args.repo, work / "repo", [CTR])
    stable = _versions(args.repo, CTR)[-1]
    bad = _shuffled_copy(args.repo / CTR / str(stable), repo, CTR)
    limits: dict[str, float | int] = {"min_agreement": args.min_agreement, "min_requests": args.min_requests}
    update_policy(repo, CTR, set_change(stable=stable, canary=bad, weight=args.weight, limits=limits))
    rows_src = args.criteo or _criteo()
    cands = [{"ad_id": f"a{i}", "features": r} for i, r in enumerate(request_rows(rows_src, 100))]
    script = wrk.post_script(work / "ctr.lua", {"candidates": cands})
    env = {"APP_LOG_LEVEL": "warning", "APP_GRPC_PORT": "0", "APP_REQUIRED_MODELS": CTR, "MODEL_REPO": str(repo),
           "APP_ROLLOUT_CHECK_INTERVAL_S": str(args.check_interval)}  # fmt: skip
    seen: dict[str, Any] = {}
    with server(["-m", "app"], env, work / "server.log") as (url, _pid):
        t0 = time.monotonic()
        done = threading.Event()

        def watch() -> None:  # the first summary that shows the rollback, and when
            while not done.is_set():
                summary = httpx.get(f"{url}/v2/models/{CTR}/rollout", timeout=30).json()
                if any(e["kind"] == "rollback" for e in summary["events"]):
                    seen.update(summary=summary, after_s=time.monotonic() - t0)
                    return
                done.wait(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        result = wrk.run(f"{url}/v1/ads/ctr", script, args.concurrency, args.duration)
        done.set()
        watcher.join()
        final = httpx.get(f"{url}/v2/models/{CTR}/rollout", timeout=30).json()
        codes = _error_codes(httpx.get(f"{url}/metrics", timeout=30).text)
    print(f"load: {result.requests} requests in {args.duration} s ({result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} "
          f"ms), non-2xx {result.non_2xx}, socket errors {result.socket_errors}")  # fmt: skip
    print(f"error codes answered (inference_requests_total): {codes or 'none'}")
    print(f"policy: stable {stable}, canary {bad} (weights shuffled) at {args.weight:.0%}, limits {limits}")
    if not seen:
        print(f"NOT rolled back within {args.duration} s; summary: {json.dumps(final['versions'])} {final['shadow']}")
        return
    at = seen["summary"]
    canary = at["versions"].get(str(bad), {})
    comp = [e for e in at["shadow"] if e["role"] == "canary"]
    event = next(e for e in at["events"] if e["kind"] == "rollback")
    print(f"rolled back {seen['after_s']:.1f} s after the load started; the canary had answered "
          f"{canary.get('requests')} requests ({canary.get('errors')} errors); comparisons "
          f"{comp[0] if comp else 'none'}")  # fmt: skip
    print(f"event: {event['reason']}")
    after = final["versions"].get(str(bad), {}).get("requests")
    print(f"canary requests by the end of the load: {after} (answers already routed when the policy changed)")


def _scored_dropped(url: str, model: str) -> tuple[int, int]:
    """The shadow comparisons this server has scored and dropped so far (every worker's, merged)."""
    entries = httpx.get(f"{url}/v2/models/{model}/rollout", timeout=30).json()["shadow"]
    found = [e for e in entries if e["role"] == "shadow"]
    return (int(found[0]["scored"]), int(found[0]["dropped"])) if found else (0, 0)


def paced_runs(args: argparse.Namespace) -> None:
    """The same offered load (open loop) on a server without and one with a shadow, interleaved."""
    import statistics

    models = [m for m in (CTR, CHAT) if len(_versions(args.repo, m)) >= 2]
    if not models:
        raise SystemExit(f"{args.repo} needs at least two versions of {CTR} or {CHAT}")
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-paced-"))
    plain = _mirror(args.repo, work / "plain", models)
    shadowed = _mirror(args.repo, work / "shadow", models)
    for model in models:
        vs = _versions(args.repo, model)
        update_policy(shadowed, model, set_change(stable=vs[-1], shadow=vs[-2], shadow_rate=args.shadow_rate))
    loads: dict[str, tuple[str, str, Any]] = {}
    if CTR in models:
        rows_src = args.criteo or _criteo()
        cands = [{"ad_id": f"a{i}", "features": r} for i, r in enumerate(request_rows(rows_src, 100))]
        loads["ctr 100 candidates"] = (CTR, "/v1/ads/ctr", {"candidates": cands})
    if CHAT in models:
        loads["chat short"] = (CHAT, "/v1/chat", {"message": "where is my order?"})
    env = {"APP_LOG_LEVEL": "warning", "APP_GRPC_PORT": "0", "APP_REQUIRED_MODELS": ",".join(models)}
    arms = ("no shadow", f"shadow {args.shadow_rate:.0%}")
    print(f"load average before: {os.getloadavg()}")
    lines = ["| load | arm | offered req/s | achieved req/s | p50 ms | p99 ms | client send lag p99 ms | "
             "p99 from send ms | server cores | non-2xx / errors | shadow scored / dropped |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    ratios: list[str] = []
    with ExitStack() as stack:
        servers = {
            arm: stack.enter_context(server(["-m", "app"], {**env, "MODEL_REPO": str(repo)}, work / f"{i}.log"))
            for i, (arm, repo) in enumerate(zip(arms, (plain, shadowed), strict=True))
        }
        for what, (model, path, body) in loads.items():
            script = wrk.post_script(work / f"{model}.lua", body)
            raw = json.dumps(body).encode()
            rate = args.rate
            if rate == "auto":
                closed = wrk.run(servers[arms[0]][0] + path, script, args.concurrency, args.duration)
                rate = closed.rps / 2
                print(f"{what}: no-shadow capacity (wrk closed loop, {args.concurrency} connections, "
                      f"{args.duration} s) {closed.rps:,.0f} req/s -> offered {rate:,.0f} req/s")  # fmt: skip
            rate = float(rate)
            for arm in arms:  # a fresh server's first seconds (allocations, first batches) are not measured
                paced.run(servers[arm][0] + path, raw, rate, args.warmup, warmup_s=0)
            per: dict[str, list[tuple[paced.PacedResult, float, int, int]]] = {arm: [] for arm in arms}
            for r in range(args.runs):
                for arm in arms if r % 2 == 0 else arms[::-1]:
                    url, pid = servers[arm]
                    tree = cpu.process_tree(pid)
                    s0, c0, t0 = _scored_dropped(url, model), cpu.cpu_seconds(tree), time.monotonic()
                    res = paced.run(url + path, raw, rate, args.duration, warmup_s=args.warmup)
                    c1, t1, s1 = cpu.cpu_seconds(tree), time.monotonic(), _scored_dropped(url, model)
                    per[arm].append((res, (c1 - c0) / (t1 - t0), s1[0] - s0[0], s1[1] - s0[1]))
            med = statistics.median
            row: dict[str, tuple[float, float, float]] = {}
            for arm in arms:
                got = per[arm]
                rps, p99 = med(g[0].rps for g in got), med(g[0].p99_ms for g in got)
                sent = med(g[0].sent_p99_ms for g in got)
                row[arm] = (rps, p99, sent)
                lines.append(
                    f"| {what} | {arm} | {rate:,.0f} | {rps:,.0f} | {med(g[0].p50_ms for g in got):.1f} | {p99:.1f} | "
                    f"{med(g[0].send_lag_p99_ms for g in got):.1f} | {sent:.1f} | {med(g[1] for g in got):.2f} | "
                    f"{sum(g[0].non_2xx for g in got)} / {sum(g[0].errors for g in got)} | "
                    f"{sum(g[2] for g in got)} / {sum(g[3] for g in got)} |"
                )
            (r0, p0, q0), (r1, p1, q1) = row[arms[0]], row[arms[1]]
            ratios.append(
                f"{what}: achieved req/s x{r1 / r0:.3f}, p99 x{p1 / p0:.3f}, p99 from send x{q1 / q0:.3f} "
                "(shadow / no shadow)"
            )
            p99s = {arm: [round(g[0].p99_ms, 1) for g in per[arm]] for arm in arms}
            ratios.append(f"{what}: p99 per run {p99s}")
    print(f"load average after: {os.getloadavg()}")
    print("\n".join(lines))
    print("\n".join(ratios))


def _rate(text: str) -> str | float:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a positive number of requests/s or 'auto', not {text!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, type=Path, help="repository with at least two ad-ctr versions")
    p.add_argument("--criteo", type=Path, help="Criteo rows for the 100 candidates (default: DATA_DIR's sample)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--shadow-rate", type=float, default=0.1)
    p.add_argument("--rate", type=_rate, help="offered req/s (open loop) or 'auto' (half the no-shadow capacity): the paced "
                   "shadow run instead")  # fmt: skip
    p.add_argument("--warmup", type=float, default=2.0, help="--rate: seconds sent before each measured run")
    p.add_argument("--broken", action="store_true", help="the broken-canary rollback run instead")
    p.add_argument("--weight", type=float, default=0.2, help="--broken: the canary's traffic share")
    p.add_argument("--min-agreement", type=float, default=0.9, help="--broken: the policy's limit")
    p.add_argument("--min-requests", type=int, default=200, help="--broken: the policy's minimum sample")
    p.add_argument("--check-interval", type=float, default=2.0, help="--broken: APP_ROLLOUT_CHECK_INTERVAL_S")
    args = p.parse_args(argv)
    if args.broken:
        broken(args)
        return
    if args.rate is not None:
        paced_runs(args)
        return
    models = [m for m in (CTR, CHAT) if len(_versions(args.repo, m)) >= 2]
    if CTR not in models:
        raise SystemExit(f"{args.repo} needs at least two {CTR} versions")
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    plain = _mirror(args.repo, work / "plain", models)
    hot = _mirror(args.repo, work / "hot", models)
    shadowed = _mirror(args.repo, work / "shadow", models)
    for model in models:
        vs = _versions(args.repo, model)
        update_policy(hot, model, set_change(stable=vs[-1]))
        update_policy(shadowed, model, set_change(stable=vs[-1], shadow=vs[-2], shadow_rate=args.shadow_rate))
    rows_src = args.criteo or _criteo()
    cands = [{"ad_id": f"a{i}", "features": r} for i, r in enumerate(request_rows(rows_src, 100))]
    scripts = {
        "v2 1-row": ("/v2/models/ad-ctr/infer", wrk.post_script(work / "v2.lua", _v2_body(args.repo))),
        "ctr 100 candidates": ("/v1/ads/ctr", wrk.post_script(work / "ctr.lua", {"candidates": cands})),
    }
    if CHAT in models:
        scripts["chat short"] = ("/v1/chat", wrk.post_script(work / "chat.lua", {"message": "where is my order?"}))
    env = {"APP_LOG_LEVEL": "warning", "APP_GRPC_PORT": "0", "APP_REQUIRED_MODELS": ",".join(models)}
    table: list[tuple[str, Row]] = []
    summaries: dict[str, Any] = {}
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(server(["-m", "app"], {**env, "MODEL_REPO": str(repo)}, work / f"{name}.log"))
            for name, repo in (("no policy", plain), ("stable-only policy", hot), ("shadow", shadowed))
        }
        for what, (path, script) in scripts.items():
            pair = ("no policy", "stable-only policy") if what == "v2 1-row" else ("no policy", "shadow")
            per = interleaved({n: servers[n] for n in pair}, path, script, args.concurrency, args.duration, args.runs)
            table += [(f"{what} ({n})", summarize(n, s)) for n, s in per.items()]
        url = servers["shadow"][0]
        summaries = {m: httpx.get(f"{url}/v2/models/{m}/rollout", timeout=30).json()["shadow"] for m in models}
        codes = {
            name: {m: _error_codes(httpx.get(f"{u}/metrics", timeout=30).text, m) for m in models}
            for name, (u, _) in servers.items()
        }
    print("| run | req/s | p50 ms | p99 ms | CPU µs/req | non-2xx |\n|---|---|---|---|---|---|")
    for name, r in table:
        print(
            f"| {name} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.cpu_us_per_request:,.0f} | {r.non_2xx} |"
        )
    print(f"error codes answered (inference_requests_total): {codes}")
    for model, entries in summaries.items():
        for e in entries:
            print(
                f"{model}: {e['role']} {e['version']} vs {e['reference']}: scored {e['scored']}, dropped "
                f"{e['dropped']}, errors {e['errors']}, agreement {e['agreement']}, measures {e['measures']}"
            )


if __name__ == "__main__":
    main()
