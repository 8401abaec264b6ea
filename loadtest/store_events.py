"""Recommendation and event latency while events of many users flow into the pod's SQLite feature store.

Starts ``python -m app`` with two workers (so the store is the shared SQLite file), then with ``wrk`` and
``loadtest/store_events.lua``:

1. events alone on a small store (1,000 users) -> event p99 on a small table;
2. the file is filled to ``--users`` users directly (SQL, as the workers write it), then recommendations alone
   -> recommend p99 without events;
3. recommendations and events of ``--users`` random users at once -> both p99s while the table is at its bound.

    python -m loadtest.store_events --repo /tmp/rec-repo --model recommend-ci --users 200000 --seconds 10
    python -m loadtest.store_events ... --app-root /tmp/older-checkout     # another checkout's app, same harness
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.bench_ctr import server

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "loadtest" / "store_events.lua"


def wrk(url: str, mode: str, users: int, items: list[str], seconds: int, connections: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(LUA), url, "--", mode, str(users),
         ",".join(items)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    fields = dict(kv.split("=") for kv in line.split()[2:])
    return {k: float(v) for k, v in fields.items()}


def fill(db: Path, users: int, items: list[str]) -> None:
    """``users`` histories of 20 events, last active over the past hour, written as the workers write them."""
    con = sqlite3.connect(str(db), timeout=30, isolation_level=None)
    now, rnd = time.time(), random.Random(0)
    con.execute("BEGIN IMMEDIATE")
    con.executemany(
        "INSERT OR REPLACE INTO hist VALUES (?, ?, ?)",
        (
            (f"load-{u}", now - rnd.random() * 3600, "\n".join(f"view|{rnd.choice(items)}" for _ in range(20)))
            for u in range(1, users + 1)
        ),
    )
    con.execute("COMMIT")
    con.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.store_events", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, required=True, help="model repository with a published recommend version")
    p.add_argument("--model", default="recommend-ci")
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--app-root", type=Path, default=ROOT, help="checkout whose `python -m app` is started")
    p.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the server")
    args = p.parse_args(argv)
    state = json.loads(next(args.repo.glob(f"{args.model}/*/rec.json")).read_text())
    items = [i for i in state["items"][1:200] if i]
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "TMPDIR": tmp,  # the workers' shared folder (and so the SQLite file) is created under it
            "MODEL_REPO": str(args.repo),
            "APP_GRPC_PORT": "0",
            "APP_WORKERS": "2",
            "APP_LOG_LEVEL": "warning",
            "APP_TASK_MODELS": json.dumps({"recommend": args.model}),
            **dict(e.split("=", 1) for e in args.env),
        }
        cwd = None if args.app_root == ROOT else args.app_root
        with server(["-m", "app"], env, Path(tmp) / "server.log", cwd=cwd) as (url, _):
            out: dict[str, Any] = {"users": args.users, "seconds": args.seconds}
            out["events_small_store"] = result(wrk(url, "events", 1000, items, args.seconds, 2))
            db = Path(glob.glob(f"{tmp}/shopinfer-metrics-*/feature-store.sqlite")[0])
            t0 = time.monotonic()
            fill(db, args.users, items)
            out["fill_s"] = round(time.monotonic() - t0, 1)
            out["recommend_alone"] = result(wrk(url, "recommend", args.users, items, args.seconds, 2))
            ev = wrk(url, "events", args.users, items, args.seconds, 2)
            rec = wrk(url, "recommend", args.users, items, args.seconds, 2)
            out["recommend_with_events"], out["events_with_recommend"] = result(rec), result(ev)
            rows = sqlite3.connect(str(db), timeout=30).execute("SELECT count(*) FROM hist").fetchone()[0]
            out["rows_after"] = rows
            out["load_average"] = os.getloadavg()
            print(json.dumps(out))


if __name__ == "__main__":
    main()
