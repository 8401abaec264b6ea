"""How cost grows with the work in one request: throughput, p99 and server CPU per request against CTR
candidates, chat message length and search candidates, so a storefront can size its pods.

``python -m loadtest.cost_growth --repo model_repo [--endpoints ctr ctr-columns chat search] [--json PATH]``

Every shape is measured exactly as :mod:`loadtest.limits` measures one endpoint (``python -m app``, one worker,
pinned to ``--server-cores``; wrk on the other cores; ONNX Runtime alone on the same tensors for the
runtime-only column), all shapes against one server with rounds interleaved over every shape. Shapes:
CTR 1, 10, 100 and 1,000 candidates (``ctr``: row body, ``ctr-columns``: columnar body); chat one short, medium and long message; search 10, 50 and 200 catalogue
candidates. ``candidates/s`` is requests/s times the candidates per request.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from loadtest.limits import Endpoint, add_common, chat, ctr, ctr_columns, measure_all, options, repository, search

SHAPES: dict[str, list[Endpoint]] = {
    "ctr": [ctr(n) for n in (1, 10, 100, 1000)],
    "ctr-columns": [ctr_columns(n) for n in (1, 10, 100, 1000)],
    "chat": [chat(length) for length in ("short", "medium", "long")],
    "search": [search(n) for n in (10, 50, 200)],
}


def _candidates(row: dict[str, Any]) -> int | None:
    first = row["shape"].split()[0]
    return int(first) if first.isdigit() else None


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| endpoint | work per request | req/s | candidates/s | p99 ms | server CPU ms/req | runtime-only CPU ms/req |"
             " CPU fraction of runtime | req/s fraction of runtime | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        n = _candidates(r)
        per = f"{r['e2e_rps'] * n:,.0f}" if n else "-"
        lines.append(
            f"| {r['endpoint']} | {r['shape']} | {r['e2e_rps']:,.0f} | {per} | {r['e2e_p99_ms']:.1f} | "
            f"{r['e2e_cpu_ms_per_request']:.2f} | {r['runtime_cpu_ms_per_request']:.2f} | "
            f"{r['cpu_fraction_of_runtime']:.0%} | {r['fraction_of_runtime']:.0%} | {r['errors']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.cost_growth", description=__doc__.split("\n\n")[0])
    add_common(p)
    p.add_argument("--endpoints", nargs="*", choices=list(SHAPES), help="default: all with --repo, else ctr")
    args = p.parse_args(argv)
    opts = options(args)
    with tempfile.TemporaryDirectory(prefix="cost-growth-") as tmp:
        work = Path(tmp)
        repo = repository(args.repo, work)
        shapes = [e for name in args.endpoints or (list(SHAPES) if args.repo else ["ctr"]) for e in SHAPES[name]]
        rows = measure_all(shapes, repo, opts, work)
    print(render(rows))
    print(f"load average {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
