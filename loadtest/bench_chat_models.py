"""Chatbot model benchmark, in process: messages/s and p50/p99 per candidate at batch 1/8/32 on this CPU.

Each timed call is what the service does per batch: tokenize + pad the messages to the batch's longest
(``ChatPreprocessor.batch``) and run the ONNX session for ``logits`` and ``embedding``. Messages are the held-out
Bitext test utterances of the chatbot config's stated split. Candidates are measured side by side in interleaved
rounds (each round runs every candidate at every batch size) so background load hits all alike; messages/s is
the median over rounds, p50/p99 are over every timed batch.

Run from the repository root::

    python -m loadtest.bench_chat_models                          # compress run (no publish) into a temp dir first
    python -m loadtest.bench_chat_models --workdir /tmp/chat-work  # candidates of `compress run ... --workdir`
    python -m loadtest.bench_chat_models --repo model_repo         # the published chat-intent versions
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.tasks.chat.text import ChatTokenizer
from compress.chat.config import ChatConfig
from compress.config import PROJECT_ROOT, load_config

CONFIG = PROJECT_ROOT / "compress" / "configs" / "chatbot.toml"


def _session(path: Path, threads: int) -> Any:
    from compress.evaluate import session

    return session(path, threads)


def candidates_from_workdir(workdir: Path) -> dict[str, Path]:
    """Every built candidate of a ``compress run --workdir`` (named in its report.json), in report order."""
    report = json.loads((workdir / "report.json").read_text())
    out = {}
    for c in report["candidates"]:
        path = workdir / f"{c['name'].replace('+', '__')}.onnx"
        if c["status"] != "error" and path.is_file():
            out[c["name"]] = path
    return out


def candidates_from_repo(repo: Path, model: str) -> dict[str, Path]:
    from app.repository import list_versions, read_manifest

    out = {}
    for v in list_versions(repo, model):
        vdir = repo / model / str(v)
        out[f"v{v} {read_manifest(vdir).candidate}"] = vdir / "model.onnx"
    return out


def bench(
    models: dict[str, Path],
    tok: ChatTokenizer,
    messages: list[str],
    batch_sizes: list[int],
    rounds: int,
    calls: int,
    threads: int,
) -> dict[str, dict[int, dict[str, float]]]:
    """{candidate: {batch: {'msgs_per_s', 'p50_ms', 'p99_ms'}}} over interleaved rounds."""
    sessions = {name: _session(p, threads) for name, p in models.items()}
    rng = np.random.default_rng(0)
    batches = {
        b: [[messages[i] for i in rng.choice(len(messages), b, replace=False)] for _ in range(calls)]
        for b in batch_sizes
    }
    lat: dict[str, dict[int, list[float]]] = {n: {b: [] for b in batch_sizes} for n in sessions}
    rate: dict[str, dict[int, list[float]]] = {n: {b: [] for b in batch_sizes} for n in sessions}

    def call(sess: Any, msgs: list[str]) -> None:
        ids, mask = tok.batch(msgs)
        sess.run(["logits", "embedding"], {"input_ids": ids, "attention_mask": mask})

    for sess in sessions.values():  # warm-up
        for b in batch_sizes:
            call(sess, batches[b][0])
    for _ in range(rounds):
        for name, sess in sessions.items():
            for b in batch_sizes:
                t_round = time.perf_counter()
                for msgs in batches[b]:
                    t0 = time.perf_counter()
                    call(sess, msgs)
                    lat[name][b].append((time.perf_counter() - t0) * 1e3)
                rate[name][b].append(b * calls / (time.perf_counter() - t_round))
    return {
        n: {
            b: {
                "msgs_per_s": statistics.median(rate[n][b]),
                "p50_ms": float(np.percentile(lat[n][b], 50)),
                "p99_ms": float(np.percentile(lat[n][b], 99)),
            }
            for b in batch_sizes
        }
        for n in sessions
    }


def markdown(results: dict[str, dict[int, dict[str, float]]], models: dict[str, Path]) -> str:
    sizes = list(next(iter(results.values())))
    ref = next(iter(results))
    head = [
        "candidate",
        "MB",
        *[f"b{b} msg/s | b{b} p50 ms | b{b} p99 ms" for b in sizes],
        *[f"x vs {ref.split()[-1]} @b{b}" for b in sizes],
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * (2 + 4 * len(sizes))]
    for name, per in results.items():
        cells = [name, f"{models[name].stat().st_size / 1e6:.1f}"]
        cells += [f"{per[b]['msgs_per_s']:,.0f} | {per[b]['p50_ms']:.2f} | {per[b]['p99_ms']:.2f}" for b in sizes]
        cells += [f"{per[b]['msgs_per_s'] / results[ref][b]['msgs_per_s']:.2f}" for b in sizes]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _held_out(cfg: ChatConfig, version_dir: Path | None) -> tuple[ChatTokenizer, list[str]]:
    from compress.chat.task import ChatTask

    task = ChatTask(cfg)
    task.prepare(version_dir)
    return task.tok, task.split.texts["test"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_chat_models", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--workdir", type=Path, help="a `compress run --workdir` folder: benchmark every candidate")
    src.add_argument("--repo", type=Path, help="a model repository: benchmark the published versions")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=20, help="timed batches per candidate, batch size and round")
    p.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    if not isinstance(cfg, ChatConfig):
        raise SystemExit(f"{args.config} is not a chat_intent config")
    version_dir = None
    if args.repo:
        models = candidates_from_repo(args.repo, cfg.model.name)
        version_dir = args.repo / cfg.model.name / next(iter(models)).split()[0][1:]
    else:
        workdir = args.workdir
        if workdir is None:
            from compress.pipeline import run

            workdir = Path(tempfile.mkdtemp(prefix="bench-chat-"))
            run(cfg, workdir / "repo", workdir=workdir, publish_versions=False)
        models = candidates_from_workdir(workdir)
    tok, messages = _held_out(cfg, version_dir)
    results = bench(models, tok, messages, args.batch_sizes, args.rounds, args.calls, args.threads)
    print(
        f"{len(messages)} held-out messages, {args.rounds} rounds x {args.calls} batches, "
        f"{args.threads} ORT thread(s); timed: tokenize + pad + session.run\n"
    )
    print(markdown(results, models))


if __name__ == "__main__":
    main()
