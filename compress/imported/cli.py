"""``python -m compress import``: the one-liner, or ``--config FILE`` with ``[model] onnx = ...``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from compress.errors import ConfigError


def config_from_args(args: argparse.Namespace) -> Any:
    """The one-liner's flags as an ``ImportConfig`` (the same object a config file gives)."""
    from compress.imported.config import load_import_config, parse_import_config

    if args.config:
        if args.model or args.data or args.label or args.metric:
            raise ConfigError("give either --config FILE or MODEL.onnx --data --label --metric, not both")
        cfg = load_import_config(Path(args.config))
        if args.name:
            cfg.model.name = args.name
        if args.vocab:
            cfg.model.vocab = args.vocab
        return cfg
    missing = [f for f, v in (("MODEL.onnx", args.model), ("--data", args.data), ("--label", args.label)) if not v]
    missing += [f for f, v in (("--metric", args.metric), ("--name", args.name)) if not v]
    if missing:
        raise ConfigError(f"compress import: missing {', '.join(missing)} (or give --config FILE)")
    data: dict[str, Any] = {"eval": args.data, "label": args.label}
    if args.calib:
        data["calib"] = args.calib
    if args.features:
        data["features"] = [f.strip() for f in args.features.split(",") if f.strip()]
    if args.group:
        data["group"] = args.group
    raw = {
        "model": {"name": args.name, "onnx": args.model, "output": args.output or "", "vocab": args.vocab or ""},
        "data": data,
        "gate": {"metric": args.metric},
    }
    return parse_import_config(raw, "command line")


def _import(args: argparse.Namespace) -> int:
    from compress.imported.pipeline import run_import
    from compress.report import print_outcome

    cfg = config_from_args(args)
    workdir = Path(args.workdir) if args.workdir else None
    result = run_import(cfg, Path(args.repo), workdir=workdir, publish_versions=not args.no_publish)
    print_outcome(result.report(cfg), cfg.model.name, result.published)
    return 0


def add_parser(sub: Any) -> None:
    """Register ``import`` on the ``python -m compress`` sub-command parser."""
    p = sub.add_parser("import", help="gate, compress and publish an FP32 ONNX model trained elsewhere")
    p.add_argument(
        "model", nargs="?", help="the FP32 ONNX file, TorchScript file or torch.export .pt2 program (or --config)"
    )
    p.add_argument("--config", help="TOML with [model] onnx = ..., [data], [gate] metric = ...")
    p.add_argument("--data", help="held-out rows: .parquet (label + feature columns) or .npz (one array per input)")
    p.add_argument("--label", help="label column / array")
    p.add_argument("--metric", help="auc, logloss, accuracy, ndcg@K, mse, mae")
    p.add_argument("--name", help="model name in the repository")
    p.add_argument("--repo", required=True, help="model repository root")
    p.add_argument("--features", help="comma-separated feature columns in input order (default: all but the label)")
    p.add_argument("--calib", help="calibration rows (default: a seeded 20%% of --data, excluded from the gate)")
    p.add_argument("--group", help="query column for ndcg@K")
    p.add_argument("--vocab", help="feature vocabularies JSON: --data holds raw rows, served on /v1/ads/ctr")
    p.add_argument("--output", help="the output the metric reads (default: the first FP32 output)")
    p.add_argument("--workdir", help="keep intermediate files here (default: a temp dir, removed)")
    p.add_argument("--no-publish", action="store_true", help="measure and report only")
    p.set_defaults(fn=_import)
