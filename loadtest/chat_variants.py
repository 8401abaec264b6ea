"""One chatbot compress run with a chosen candidate list and config overrides, then its table and plain-set score.

For side-by-side experiments on the chatbot (QAT vs PTQ, training-set augmentation): every candidate of one
run shares the teacher, the student, the split and the interleaved latency rounds. ``--ci`` starts from the CI
configuration (``tests/fixtures/chat_run.py``: capped rows, no student search) instead of chatbot.toml.
The published version (the run's selection) is then scored on the plain-phrasing set (``compress.chat.plain``).

    python -m loadtest.chat_variants --ci --repo /tmp/cv/repo --workdir /tmp/cv/work \\
        --candidates fp32,int8_qdq,int8_qat --set qat.epochs=1 --set 'train.augment=["plain"]'
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from compress.chat.config import ChatConfig
from compress.chat.plain import PLAIN_SET, load_plain, score_plain
from compress.config import PROJECT_ROOT, load_config

CONFIG = PROJECT_ROOT / "compress" / "configs" / "chatbot.toml"


def configured(ci: bool, candidates: list[str], sets: list[str]) -> ChatConfig:
    """chatbot.toml (or its CI form) with ``candidates`` and ``section.key=<json>`` overrides, validated."""
    from tests.fixtures.chat_run import ci_chat_config

    cfg = load_config(CONFIG)
    assert isinstance(cfg, ChatConfig)
    raw: dict[str, Any] = (ci_chat_config(cfg) if ci else cfg).model_dump(mode="json")
    if candidates:
        raw["candidates"] = candidates
    for item in sets:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        raw.setdefault(section, {})[name] = parsed
    return ChatConfig.model_validate(raw)


def score_files(cfg: ChatConfig, workdir: Path) -> None:
    """Gate metrics, bytes and side-by-side latency at the selection batch of every candidate file in
    ``workdir`` (what a run has built so far), evaluated exactly as the pipeline does."""
    from compress.evaluate import latency_stats, session
    from compress.gate import check
    from compress.registry import get_task
    from compress.tasks import task_latency_feeds, task_predict

    task: Any = get_task(cfg)
    task.prepare()
    files = sorted(p for p in workdir.glob("*.onnx") if not p.name.endswith(".raw.onnx") and "-" not in p.name)
    feeds, out = task.feeds["test"], "logits"
    metrics = {p.stem: task.metrics(task_predict(task, session(p, threads=2), feeds, out), "test") for p in files}
    b = cfg.select.batch_size
    sessions = {p.stem: session(p, cfg.latency.threads) for p in files}
    lat = latency_stats(sessions, task_latency_feeds(task, feeds, [b]), cfg.latency.repeats)
    print(f"| file | bytes | ms@{b} | accuracy | oos_auroc | oos_recall_at_95 | gate |")
    print("|---|---|---|---|---|---|---|")
    for p in files:
        m, name = metrics[p.stem], p.stem
        gate = check(m, metrics["fp32"], cfg.gate.rules) if "fp32" in metrics else None
        print(
            f"| {name} | {p.stat().st_size:,} | {lat[name][str(b)][0]:.3f} | {m['accuracy']:.5f} | "
            f"{m['oos_auroc']:.5f} | {m['oos_recall_at_95']:.5f} | "
            f"{'-' if gate is None else 'passed' if gate.passed else gate.reason} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.chat_variants", description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--ci", action="store_true", help="start from the CI configuration (capped rows)")
    ap.add_argument("--candidates", default="", help="comma-separated candidate list (default: the config's)")
    ap.add_argument("--set", action="append", default=[], help="section.key=<json value>, repeatable")
    ap.add_argument("--score", action="store_true", help="only score the candidate files already in --workdir")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.score:
        score_files(configured(a.ci, [], a.set), a.workdir)
        return 0
    from app.repository import read_manifest
    from compress.errors import GateFailed
    from compress.pipeline import REPORT_FILE, run

    cfg = configured(a.ci, [c for c in a.candidates.split(",") if c], a.set)
    try:
        run(cfg, a.repo, workdir=a.workdir)
    except GateFailed as e:
        print(f"gate: {e}")
    report = json.loads((a.workdir / REPORT_FILE).read_text())
    b = str(cfg.select.batch_size)
    print(f"| candidate | status | bytes | ms@{b} | accuracy | oos_auroc | oos_recall_at_95 |")
    print("|---|---|---|---|---|---|---|")
    for c in report["candidates"]:
        m = c["metrics"]
        print(
            f"| {c['name']} | {c['status']} | {c['bytes']:,} | {c['latency_ms'].get(b, float('nan')):.3f} | "
            f"{m.get('accuracy', float('nan')):.5f} | {m.get('oos_auroc', float('nan')):.5f} | "
            f"{m.get('oos_recall_at_95', float('nan')):.5f} |"
        )
    qat = {c["name"]: c["recipe"]["qat"] for c in report["candidates"] if "qat" in c.get("recipe", {})}
    if qat:
        print(json.dumps(qat))
    for vdir in sorted((a.repo / cfg.model.name).glob("[0-9]*"), key=lambda p: int(p.name)):
        score = score_plain(vdir, load_plain(PLAIN_SET))
        misses = score.pop("misses")
        candidate = read_manifest(vdir).candidate
        print(f"plain set, version {vdir.name} ({candidate}): {json.dumps(score)}")
        for m in misses:
            print(json.dumps(m))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
