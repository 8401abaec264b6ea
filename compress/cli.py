"""Command line: ``python -m compress <command>`` (run, report, catalogue...). Expected failures print one line, exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compress.errors import CompressError

EVAL_TOLERANCE = 1e-6  # metrics must reproduce this closely: same file, same rows, deterministic ORT CPU


def _run(args: argparse.Namespace) -> int:
    from compress.config import load_config
    from compress.pipeline import run
    from compress.report import print_outcome

    cfg = load_config(Path(args.config))
    if args.data:
        cfg.data.path = args.data
    workdir = Path(args.workdir) if args.workdir else None
    result = run(cfg, Path(args.repo), workdir=workdir, publish_versions=not args.no_publish)
    print_outcome(result.report(cfg), cfg.model.name, result.published)
    return 0


def _report(args: argparse.Namespace) -> int:
    from compress.report import load_report, markdown, plot

    version, _, report = load_report(Path(args.repo), args.model, args.version)
    out = Path(args.out) if args.out else Path("reports") / f"{args.model}-v{version}.png"
    text = markdown(report)
    print(f"# {args.model} version {version}\n\n{text}\n")
    print(f"plot: {plot(report, out)}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from compress.verify import evaluate_version

    rows, ok = evaluate_version(Path(args.version_dir), data=args.data, tolerance=args.tolerance)
    print("| metric | manifest | recomputed | diff |\n|---|---|---|---|")
    for name, (want, got) in rows.items():
        print(f"| {name} | {want:.6f} | {got:.6f} | {got - want:+.2e} |")
    print("reproduced" if ok else f"MISMATCH beyond tolerance {args.tolerance}")
    return 0 if ok else 1


def _demo(args: argparse.Namespace) -> int:
    from compress.demo import ensure_demo_models

    built = ensure_demo_models(Path(args.repo))
    print("\n".join(built) if built else f"demo models already present in {args.repo}")
    return 0


def _features(args: argparse.Namespace) -> int:
    from compress.config import load_config
    from compress.errors import ConfigError
    from compress.recommend.config import RecConfig
    from compress.recommend.features import load_features
    from compress.settings import compress_settings

    cfg = load_config(Path(args.config))
    if not isinstance(cfg, RecConfig):
        raise ConfigError(f"{args.config}: 'features load' needs a recommendation config")
    n = load_features(cfg, args.redis_url or compress_settings().redis_url)
    print(f"loaded the recent histories of {n} customers into the feature store")
    return 0


def _catalogue(args: argparse.Namespace) -> int:
    from compress.config import load_config
    from compress.errors import ConfigError
    from compress.recommend.catalogue import (
        publish_side,
        read_snapshot,
        read_source,
        snapshot,
        snapshot_gate,
        summary,
    )
    from compress.recommend.config import RecConfig

    cfg = load_config(Path(args.config))
    if not isinstance(cfg, RecConfig):
        raise ConfigError(f"{args.config}: 'catalogue' needs a recommendation config")
    repo = Path(args.repo)
    source = read_source(repo / cfg.model.name / str(args.from_version))
    items, titles = read_snapshot(
        Path(args.snapshot), args.item_column or cfg.data.item, args.title_column or cfg.data.text
    )
    side, change = snapshot(source, items, titles, args.cold_start)
    kind = args.retrieval or str(source.manifest.recipe.get("retrieval", "ivf_flat"))
    note = {**change, "snapshot": str(args.snapshot)}
    gate = snapshot_gate(cfg, source, side)
    _, vdir = publish_side(repo, source, side, kind, cfg.retrieval, cfg.train.seed, note, gate=gate)
    print(summary(vdir))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m compress", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug-level log lines too")
    p.add_argument("-q", "--quiet", action="store_true", help="no stage lines (model, step, elapsed, ETA)")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train, compress, gate and publish")
    r.add_argument("config")
    r.add_argument("--repo", required=True, help="model repository root")
    r.add_argument("--data", help="override [data].path")
    r.add_argument("--workdir", help="keep intermediate files here (default: a temp dir, removed)")
    r.add_argument("--no-publish", action="store_true", help="measure and report only")
    r.set_defaults(fn=_run)
    rep = sub.add_parser("report", help="markdown table and PNG plot of a run's candidates")
    rep.add_argument("model")
    rep.add_argument("--repo", required=True)
    rep.add_argument("--version", type=int)
    rep.add_argument("--out", help="PNG path (default reports/<model>-v<version>.png)")
    rep.set_defaults(fn=_report)
    e = sub.add_parser("evaluate", help="recompute a published version's metrics")
    e.add_argument("version_dir")
    e.add_argument("--data", help="override the data path recorded in the manifest")
    e.add_argument("--tolerance", type=float, default=EVAL_TOLERANCE)
    e.set_defaults(fn=_evaluate)
    d = sub.add_parser("demo", help="build the demo models into a repository if they are missing")
    d.add_argument("--repo", default="model_repo")
    d.set_defaults(fn=_demo)
    f = sub.add_parser("features", help="online feature store: 'load CONFIG' fills Redis from the training log")
    f.add_argument("action", choices=["load"])
    f.add_argument("config")
    f.add_argument("--redis-url", help="redis://host:port/db (default: env APP_REDIS_URL, then REDIS_URL)")
    f.set_defaults(fn=_features)
    c = sub.add_parser(
        "catalogue", help="publish a new catalogue snapshot over an ANN version's user tower (no retraining)"
    )
    c.add_argument("config", help="the recommendation config (model name, [data] columns, [retrieval])")
    c.add_argument("--snapshot", required=True, help="CSV, TSV or parquet: one row per item now in the catalogue")
    c.add_argument("--from-version", type=int, required=True, help="the ANN version whose user tower is reused")
    c.add_argument("--repo", required=True)
    c.add_argument("--retrieval", choices=["ivf_flat", "ivf_pq_fastscan", "hnsw", "exact"], help="default: source's")
    c.add_argument("--cold-start", choices=["skip", "title"], default="skip", help="new items (no learned vector)")
    c.add_argument("--item-column", help="default: [data].item")
    c.add_argument("--title-column", help="default: [data].text")
    c.set_defaults(fn=_catalogue)
    from compress.imported.cli import add_parser as add_import

    add_import(sub)
    from compress.policy_cli import add_parser as add_policy

    add_policy(sub)
    return p


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current ``sys.stderr`` (which tests and tools may swap), not the one at creation."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


@contextmanager
def _stage_lines(on: bool) -> Iterator[None]:
    """Stage lines go to stderr by default, unprefixed: a run takes minutes and must not look hung."""
    from compress.progress import stage_log

    saved = (list(stage_log.handlers), stage_log.propagate, stage_log.level)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    stage_log.handlers[:] = [handler]
    stage_log.propagate = False
    stage_log.setLevel(logging.INFO if on else logging.WARNING)
    try:
        yield
    finally:
        stage_log.handlers[:], stage_log.propagate = saved[0], saved[1]
        stage_log.setLevel(saved[2])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("onnxruntime").setLevel(logging.WARNING)  # quantizer progress lines
    with _stage_lines(not args.quiet):
        try:
            return int(args.fn(args))
        except CompressError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code
