"""Rollout costs, side by side and interleaved (wrk): the same versions served without and with a policy.

* ``hotpath``: 1-row KServe v2 requests to ad-ctr; policy = stable only (the routing lookup on every request).
* ``shadow``: 100-candidate ``/v1/ads/ctr`` requests (and short ``/v1/chat`` messages when the repository holds
  ``chat-intent``); policy = the newest version stable, the one before it shadowed at ``--shadow-rate``.

Both servers read the same version folders (symlinked into two temporary repositories, one with the policies).
Prints a table (medians of ``--runs`` interleaved rounds) and, for the shadow run, the comparisons the policy
server scored and dropped (``GET /v2/models/{model}/rollout``).

    python -m loadtest.bench_rollout --repo model_repo --duration 5 --runs 3 --shadow-rate 0.1
"""

from __future__ import annotations

import argparse
import json
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from app.rollout.policy import set_change, update_policy
from loadtest.harness import wrk
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


def _v2_body(repo: Path) -> dict[str, Any]:
    manifest = json.loads((repo / CTR / str(_versions(repo, CTR)[-1]) / "manifest.json").read_text())
    inputs = []
    for spec in manifest["inputs"]:
        width = spec["shape"][1]
        zero: Any = 0.0 if spec["dtype"] == "FP32" else 0
        inputs.append({"name": spec["name"], "datatype": spec["dtype"], "shape": [1, width], "data": [zero] * width})
    return {"inputs": inputs}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, type=Path, help="repository with at least two ad-ctr versions")
    p.add_argument("--criteo", type=Path, help="Criteo rows for the 100 candidates (default: DATA_DIR's sample)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--shadow-rate", type=float, default=0.1)
    args = p.parse_args(argv)
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
    from compress.config import DEFAULT_DATA_DIR

    rows_src = args.criteo or Path(DEFAULT_DATA_DIR) / "ctr" / "criteo_kaggle_train_10k.txt"
    cands = [{"ad_id": f"a{i}", "features": r} for i, r in enumerate(request_rows(rows_src, 100))]
    scripts = {
        "v2 1-row": ("/v2/models/ad-ctr/infer", wrk.post_script(work / "v2.lua", _v2_body(args.repo))),
        "ctr 100 candidates": ("/v1/ads/ctr", wrk.post_script(work / "ctr.lua", {"candidates": cands})),
    }
    if CHAT in models:
        scripts["chat short"] = ("/v1/chat", wrk.post_script(work / "chat.lua", {"message": "where is my order?"}))
    env = {"APP_LOG_LEVEL": "warning", "APP_REQUIRED_MODELS": ",".join(models)}
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
    print("| run | req/s | p50 ms | p99 ms | CPU µs/req | non-2xx |\n|---|---|---|---|---|---|")
    for name, r in table:
        print(
            f"| {name} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.cpu_us_per_request:,.0f} | {r.non_2xx} |"
        )
    for model, entries in summaries.items():
        for e in entries:
            print(
                f"{model}: {e['role']} {e['version']} vs {e['reference']}: scored {e['scored']}, dropped "
                f"{e['dropped']}, errors {e['errors']}, agreement {e['agreement']}, measures {e['measures']}"
            )


if __name__ == "__main__":
    main()
