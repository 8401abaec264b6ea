"""``POST /v1/chat`` through the real server: messages/s and p50/p99 at several concurrencies (wrk).

Uses a repository that already holds a published ``chat-intent`` version (build one with
``python -m compress run compress/configs/chatbot.toml --repo DIR``). A short and a long customer message are
driven separately, since per-batch padding makes short messages cheaper. Runs are bounded by ``--duration``
and repeated ``--runs`` times; medians are printed.

    python -m loadtest.bench_chat_http --repo /tmp/chat-repo --duration 5 --runs 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from loadtest.bench_ctr import LUA, server
from loadtest.peers.measure import Row, run_wrk, summarize

MESSAGES = {
    "short": "where is my order?",
    "long": "Hello, I placed an order last week with order number 12345678 and it still has not arrived, "
    "could you please tell me how I can track it and when it will be delivered to my address?",
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, type=Path, help="repository with a published chat-intent version")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    scripts = {}
    for name, text in MESSAGES.items():
        body = work / f"{name}.json"
        body.write_text(json.dumps({"message": text}))
        scripts[name] = work / f"{name}.lua"
        scripts[name].write_text(LUA.format(body=body))
    env = {"MODEL_REPO": str(args.repo), "APP_REQUIRED_MODELS": "chat-intent", "APP_LOG_LEVEL": "warning"}
    rows: list[tuple[str, int, Row]] = []
    with server(["-m", "app"], env, work / "server.log") as (url, pid):
        for name, script in scripts.items():
            for c in concurrencies:
                runs = [run_wrk(url + "/v1/chat", script, c, args.duration, pid) for _ in range(args.runs)]
                rows.append((name, c, summarize(name, runs)))
    print("| message | clients | msg/s | p50 ms | p99 ms | CPU µs/msg | non-2xx |\n|---|---|---|---|---|---|---|")
    for name, c, r in rows:
        print(
            f"| {name} | {c} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.cpu_us_per_request:,.0f} | "
            f"{r.non_2xx + r.socket_errors} |"
        )


if __name__ == "__main__":
    main()
