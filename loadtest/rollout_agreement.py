"""Live agreement of each compressed version with its FP32 parent, next to the offline gate's figures.

For every model of ``--repo`` whose newest version names a ``lineage.parent_version`` (every ``compress`` run
publishes the FP32 baseline next to the compressed candidate), a policy makes the compressed version stable and
shadows the FP32 parent on 100 % of requests. The model's held-out test split, read and split exactly as its
``compress`` config does, is replayed through the real HTTP service one request at a time (so no comparison is
dropped for a busy worker); then ``GET /v2/models/{model}/rollout`` gives the live comparison, printed next to
the manifest's offline metrics of both versions.

    python -m loadtest.rollout_agreement --repo model_repo

Models: ``ctr`` (test rows as ``/v1/ads/ctr`` requests of ``--candidates`` candidates), ``chat`` (in-scope
test messages, then the out-of-scope ones, as ``/v1/chat`` messages), ``search`` (each test query with its
judged products, by id, as ``/v1/search/rank``) and ``recommend`` (each test-window user's history before the
window, newest first, as an anonymous ``/v1/recommend`` request for 10 items). Other tasks are listed as not
replayed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from app.rollout.policy import set_change, update_policy
from compress.config import CompressConfig, load_config
from compress.demo import DEMO_CONFIGS
from loadtest.harness.procs import python_server, wait_until


def _versions(repo: Path, model: str) -> list[int]:
    return sorted(int(p.name) for p in (repo / model).iterdir() if p.name.isdigit())


def _manifest(repo: Path, model: str, version: int) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((repo / model / str(version) / "manifest.json").read_text())
    return doc


def _config(model: str, configs: list[Path]) -> CompressConfig | None:
    for path in configs:
        cfg = load_config(path)
        if cfg.model.name == model:
            return cfg
    return None


Phase = tuple[str, str, list[dict[str, Any]]]
"""(what is replayed, route, request bodies)."""


def _ctr_requests(cfg: Any, per_request: int, limit: int) -> list[Phase]:
    """The config's test rows (its seeded split) as ``/v1/ads/ctr`` bodies: ints for dense fields, strings for
    categorical ones, empty fields absent (as a request carries them)."""
    from compress.data import read_table, split_rows

    d = cfg.data
    columns = read_table(d)
    split = split_rows(len(columns[d.label]), cfg.split)
    rows = []
    for i in split.test[:limit]:
        rec: dict[str, Any] = {c: int(columns[c][i]) for c in d.dense if columns[c][i]}
        rec.update({c: columns[c][i] for c in d.categorical if columns[c][i]})
        rows.append(rec)
    bodies = [
        {
            "candidates": [
                {"ad_id": f"a{start + j}", "features": r} for j, r in enumerate(rows[start : start + per_request])
            ]
        }
        for start in range(0, len(rows), per_request)
    ]
    return [(f"test rows, {per_request} per request", "/v1/ads/ctr", bodies)]


def _chat_requests(cfg: Any, limit: int) -> list[Phase]:
    """The config's in-scope test messages, then its out-of-scope ones (its seeded per-intent split)."""
    from compress.chat.data import read_pairs, read_utterances, split_utterances

    utts, _ = read_utterances(cfg.data, read_pairs(cfg.data))
    split = split_utterances(utts, cfg.data, cfg.split)
    return [
        ("in-scope test messages", "/v1/chat", [{"message": t} for t in split.texts["test"][:limit]]),
        ("out-of-scope test messages", "/v1/chat", [{"message": t} for t in split.oos_test[:limit]]),
    ]


def _search_requests(cfg: Any, limit: int) -> list[Phase]:
    """The config's test queries (its seeded query split), each with its judged products as id-only candidates."""
    from compress.search.data import read_judgments, split_queries

    data = read_judgments(cfg.data)
    split = split_queries(len(data.lists), cfg.split)
    bodies = [
        {"query": data.lists[i].query, "candidates": [{"product_id": p} for p in data.lists[i].products]}
        for i in split.test[:limit]
    ]
    return [("test queries, judged products by id", "/v1/search/rank", bodies)]


def _recommend_requests(cfg: Any, limit: int) -> list[Phase]:
    """The users with a basket in the config's test window: their history before it, as anonymous requests."""
    from compress.recommend.data import TEST
    from compress.recommend.task import load_split

    split = load_split(cfg)
    window = split.window(TEST)
    bodies = [
        {"history": [split.items[int(i)] for i in row if i > 0], "k": 10} for row in window.history[:limit].tolist()
    ]
    return [("test-window users' histories", "/v1/recommend", [b for b in bodies if b["history"]])]


def _requests(cfg: CompressConfig, args: argparse.Namespace) -> list[Phase] | None:
    task = cfg.model.task
    if task == "ctr":
        return _ctr_requests(cfg, args.candidates, args.rows)
    if task == "chat":
        return _chat_requests(cfg, args.rows)
    if task == "search":
        return _search_requests(cfg, args.rows)
    if task == "recommend":
        return _recommend_requests(cfg, args.rows)
    return None


def _offline(manifest: dict[str, Any]) -> str:
    """The manifest's scalar test metrics of the compressed candidate and its FP32 reference, side by side."""
    metrics = manifest.get("metrics", {})
    cand, fp32 = metrics.get("candidate", {}), metrics.get("fp32", {})
    shown = [
        f"{k} {cand[k]:.4f} vs FP32 {fp32[k]:.4f} (delta {cand[k] - fp32[k]:+.4f})"
        for k in sorted(set(cand) & set(fp32))
        if isinstance(cand[k], int | float) and isinstance(fp32[k], int | float) and not isinstance(cand[k], bool)
    ]
    return "; ".join(shown) or "(no offline metrics in the manifest)"


def _entry(url: str, model: str) -> dict[str, Any]:
    shadow = httpx.get(f"{url}/v2/models/{model}/rollout", timeout=30).json()["shadow"]
    found = [e for e in shadow if e["role"] == "shadow"]
    return found[0] if found else {"scored": 0, "dropped": 0, "errors": 0, "agreement": None, "measures": {}}


def _ended(entry: dict[str, Any]) -> int:
    """Shadow comparisons that ended (scored, dropped or failed)."""
    return int(entry["scored"] + entry["dropped"] + entry["errors"])


def _all_finished(url: str, model: str, count: int) -> bool:
    return _ended(_entry(url, model)) >= count


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The comparisons between two summaries: counts subtracted, means recovered from mean x scored."""
    n0, n1 = before["scored"], after["scored"]
    out: dict[str, Any] = {k: after[k] - before[k] for k in ("scored", "dropped", "errors")}

    def mean(a: float | None, b: float | None) -> float | None:
        return None if b is None or n1 == n0 else (b * n1 - (a or 0.0) * n0) / (n1 - n0)

    out["agreement"] = mean(before["agreement"], after["agreement"])
    out["measures"] = {k: mean(before["measures"].get(k), v) for k, v in after["measures"].items()}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, type=Path, help="repository of compress-published models")
    p.add_argument("--config", type=Path, action="append", help="compress config(s) (default: the demo's four)")
    p.add_argument("--rows", type=int, default=1500, help="test rows (messages) replayed per model at most")
    p.add_argument("--candidates", type=int, default=100, help="ad-CTR candidates per request")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    configs = args.config or DEMO_CONFIGS
    work = Path(tempfile.mkdtemp(prefix="rollout-agreement-"))
    repo = work / "repo"
    plan: list[tuple[str, int, int, CompressConfig]] = []
    for model_dir in sorted(d for d in args.repo.iterdir() if d.is_dir() and _versions(args.repo, d.name)):
        model = model_dir.name
        newest = _versions(args.repo, model)[-1]
        parent = _manifest(args.repo, model, newest).get("lineage", {}).get("parent_version")
        cfg = _config(model, configs)
        if parent is None or parent == newest or cfg is None:
            print(f"{model}: skipped (no FP32 parent in version {newest}'s lineage, or no config names it)")
            continue
        (repo / model).mkdir(parents=True)
        for v in (newest, parent):
            (repo / model / str(v)).symlink_to((args.repo / model / str(v)).resolve())
        update_policy(repo, model, set_change(stable=newest, shadow=parent, shadow_rate=1.0))
        plan.append((model, newest, parent, cfg))
    if not plan:
        raise SystemExit(f"{args.repo} has no model with a compressed version and its FP32 parent")
    env = {
        "MODEL_REPO": str(repo),
        "APP_WORKERS": str(args.workers),
        "APP_LOG_LEVEL": "warning",
        "APP_GRPC_PORT": "0",  # HTTP only: no clash with another server's gRPC port
        "APP_REQUIRED_MODELS": ",".join(m for m, *_ in plan),
        "APP_ROLLOUT_TIMEOUT_MS": "10000",  # a slow FP32 shadow on a loaded machine still counts
    }
    rows_out = []
    with python_server(["-m", "app"], env, work / "server.log") as (url, _pid), httpx.Client(timeout=60) as client:
        for model, newest, parent, cfg in plan:
            requests = _requests(cfg, args)
            if requests is None:
                print(f"{model}: task {cfg.model.task} is not replayed by this script")
                continue
            for phase, path, bodies in requests:
                before, failed, t0 = _entry(url, model), 0, time.monotonic()
                for n, body in enumerate(bodies, 1):
                    r = client.post(f"{url}{path}", json=body)
                    failed += r.status_code != 200
                    # one at a time: the next request waits for this one's comparison (none dropped for a
                    # busy worker, unless the machine itself is)
                    wait_until(partial(_all_finished, url, model, _ended(before) + n), 60, f"{model}: comparison")
                entry = _delta(before, _entry(url, model))
                rows_out.append((f"{model} ({phase})", newest, parent, len(bodies), failed, entry))
                print(f"{model} ({phase}): {len(bodies)} requests ({failed} failed) in {time.monotonic() - t0:.0f} s")
    print("\n| model | live v. / FP32 parent | requests | shadow scored / dropped / errors | live agreement |"
          " live measures (means) | offline (manifest, test split) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for model, newest, parent, sent, failed, e in rows_out:
        measures = ", ".join(f"{k} {v:.4f}" for k, v in sorted(e["measures"].items()))
        agreement = "n/a" if e["agreement"] is None else f"{e['agreement']:.4f}"
        print(
            f"| {model} | {newest} / {parent} | {sent} ({failed} failed) | {e['scored']} / {e['dropped']} / "
            f"{e['errors']} | {agreement} | {measures} | {_offline(_manifest(args.repo, model.split()[0], newest))} |"
        )


if __name__ == "__main__":
    main()
