"""``POST /v1/chat`` through the real server: messages/s and p50/p99 at several concurrencies (wrk).

Uses a repository that already holds a published ``chat-intent`` version (build one with
``python -m compress run compress/configs/chatbot.toml --repo DIR``). A short and a long customer message are
driven separately, since per-batch padding makes short messages cheaper. Runs are bounded by ``--duration``
and repeated ``--runs`` times; medians are printed.

    python -m loadtest.bench_chat_http --repo /tmp/chat-repo --duration 5 --runs 3
    # side by side with another checkout (e.g. a git worktree of an older commit), runs interleaved:
    python -m loadtest.bench_chat_http --repo /tmp/chat-repo --compare-tree /tmp/before --compare-repo /tmp/r1-repo

Before timing, every target must give the same intent for both messages.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx

from loadtest.harness import wrk
from loadtest.harness.procs import python_server as server
from loadtest.peers.measure import Row, interleaved, summarize

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
    p.add_argument("--compare-tree", type=Path, help="another checkout of this project, served side by side")
    p.add_argument("--compare-repo", type=Path, help="repository for --compare-tree (default: --repo)")
    args = p.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    scripts = {name: wrk.post_script(work / f"{name}.lua", {"message": text}) for name, text in MESSAGES.items()}
    env = {"MODEL_REPO": str(args.repo), "APP_REQUIRED_MODELS": "chat-intent", "APP_LOG_LEVEL": "warning"}
    rows: list[tuple[str, int, Row]] = []
    with ExitStack() as stack:
        targets = {"service": stack.enter_context(server(["-m", "app"], env, work / "server.log"))}
        if args.compare_tree is not None:
            compare_env = {**env, "MODEL_REPO": str(args.compare_repo or args.repo)}
            cwd = args.compare_tree.resolve()
            targets[f"@{args.compare_tree}"] = stack.enter_context(
                server(["-m", "app"], compare_env, work / "compare.log", cwd=cwd)
            )
        for name, text in MESSAGES.items():  # same model, same answers, or the comparison means nothing
            intents = {
                t: httpx.post(u + "/v1/chat", json={"message": text}).json()["intent"] for t, (u, _) in targets.items()
            }
            if len(set(intents.values())) != 1:
                raise SystemExit(f"targets disagree on {name!r}: {intents}")
        for name, script in scripts.items():
            for c in concurrencies:
                per = interleaved(targets, "/v1/chat", script, c, args.duration, args.runs)
                for t, samples in per.items():
                    rows.append((f"{name} ({t})" if len(targets) > 1 else name, c, summarize(name, samples)))
    print("| message | clients | msg/s | p50 ms | p99 ms | CPU µs/msg | non-2xx |\n|---|---|---|---|---|---|---|")
    for name, c, r in rows:
        print(
            f"| {name} | {c} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.cpu_us_per_request:,.0f} | "
            f"{r.non_2xx + r.socket_errors} |"
        )


if __name__ == "__main__":
    main()
