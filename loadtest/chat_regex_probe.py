"""Chat reply parsing under attack: the p50 of a well-behaved chat client alone, then while two clients send
messages built to make the reply's entity patterns backtrack. ``python -m loadtest.chat_regex_probe ROOT REPO
[ATTACK]`` starts ``python -m app`` from checkout ROOT on REPO (with a published chat-intent), prints both p50s
and the attack requests' own latency (docs/operations.md, "Hostile inputs")."""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from loadtest.bench_ctr import server

ATTACKS = {
    "refund": "refund " + "1" * 993,
    "order": "order" + " " * 990 + "x",
    "ordinary": "I want a refund of 40 dollars for order 12345678",  # the control: plain load from two clients
}


def main() -> None:
    root, repo = sys.argv[1], sys.argv[2]
    attack = ATTACKS[sys.argv[3] if len(sys.argv) > 3 else "refund"]
    env = {"MODEL_REPO": repo, "APP_GRPC_PORT": "0", "APP_LOG_LEVEL": "warning"}
    log = Path(tempfile.mkdtemp(prefix="chat-probe-")) / "server.log"
    with server(["-m", "app"], env, log, cwd=Path(root)) as (url, _pid):
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/v1/chat", json={"message": attack})
            print("attack answer:", r.status_code, r.json().get("kind", r.json().get("intent")))

        def victim(n: int) -> list[float]:
            out = []
            with httpx.Client(base_url=url, timeout=60) as c:
                for _ in range(n):
                    t = time.perf_counter()
                    c.post("/v1/chat", json={"message": "where is my order 12345678"}).raise_for_status()
                    out.append(time.perf_counter() - t)
            return out

        alone = victim(100)
        stop, attack_lat = threading.Event(), []

        def attacker() -> None:
            with httpx.Client(base_url=url, timeout=120) as c:
                while not stop.is_set():
                    t = time.perf_counter()
                    c.post("/v1/chat", json={"message": attack})
                    attack_lat.append(time.perf_counter() - t)

        threads = [threading.Thread(target=attacker) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1)
        attacked = victim(100)
        stop.set()
        for t in threads:
            t.join()
        p50 = statistics.median
        print(
            f"victim p50 alone {p50(alone) * 1e3:.1f} ms, under attack {p50(attacked) * 1e3:.1f} ms "
            f"(x{p50(attacked) / p50(alone):.2f}); attack requests {len(attack_lat)}, p50 {p50(attack_lat) * 1e3:.1f} ms"
        )


if __name__ == "__main__":
    main()
