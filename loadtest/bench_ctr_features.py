"""CTR featurization in Python vs inside the ONNX graph: 100-candidate requests -> scores, in-process.

*python*: ``CtrFeaturizer.transform_records`` + ``session.run`` on ``model.onnx`` (today's serving path).
*graph*: ``raw_arrays`` + one ``session.run`` on ``model_raw.onnx`` (featurization merged into the model).
Rows are real Criteo rows as a request carries them (ints, hex strings, absent fields). Variants are timed in
interleaved rounds (each round times every variant for ``--seconds``), and the table shows the median over
rounds of each round's median call time. ONNX Runtime on 1 intra-op thread, like the service.

    python -m loadtest.bench_ctr_features                         # the test fixture model
    python -m loadtest.bench_ctr_features --version-dir model_repo/ad-ctr/2 --rounds 7
"""

from __future__ import annotations

import argparse
import gc
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort

from app.runtime.ort_options import cpu_session
from app.tasks.ctr.features import CtrFeaturizer
from compress.ctr.feature_graph import RAW_MODEL_FILE, build_feature_graph, build_raw_model, raw_arrays
from loadtest.harness.timing import call_times


def _session(model: onnx.ModelProto | Path) -> ort.InferenceSession:
    return cpu_session(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model)


def _median_call_s(fn: Callable[[], Any], seconds: float) -> float:
    return statistics.median(call_times(fn, seconds))


def variants(version_dir: Path, rows: list[dict[str, Any]]) -> dict[str, Callable[[], Any]]:
    """Whole paths first, then their parts, then the two categorical encodings of the feature graph alone."""
    f = CtrFeaturizer.load(version_dir / "preprocess.json")
    model = onnx.load(str(version_dir / "model.onnx"))
    raw_path = version_dir / RAW_MODEL_FILE
    py_sess = _session(model)
    raw_sess = _session(raw_path if raw_path.is_file() else build_raw_model(f, model))
    out = [o.name for o in model.graph.output]
    feats, arrays = f.transform_records(rows), raw_arrays(rows, f)
    per_field = _session(build_feature_graph(f, opset=20, encoder="per_field"))
    joint = _session(build_feature_graph(f, opset=20, encoder="joint"))
    return {
        "python: transform_records + run(model.onnx)": lambda: py_sess.run(out, f.transform_records(rows)),
        "graph: raw_arrays + run(model_raw.onnx)": lambda: raw_sess.run(out, raw_arrays(rows, f)),
        "  part: transform_records": lambda: f.transform_records(rows),
        "  part: run(model.onnx)": lambda: py_sess.run(out, feats),
        "  part: raw_arrays": lambda: raw_arrays(rows, f),
        "  part: run(model_raw.onnx)": lambda: raw_sess.run(out, arrays),
        "  feature graph only, per-field LabelEncoders (26)": lambda: per_field.run(None, arrays),
        "  feature graph only, one LabelEncoder on field\\x1fvalue": lambda: joint.run(None, arrays),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench_ctr_features", description=__doc__.split("\n\n")[0])
    p.add_argument("--version-dir", type=Path, help="a published ad-ctr version (default: the test fixture model)")
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0, help="per variant per round")
    args = p.parse_args(argv)
    from tests.fixtures.ctr_model import build_artifacts, raw_records

    vdir = args.version_dir or build_artifacts(0)
    rows = raw_records(args.candidates)
    fns = variants(vdir, rows)
    gc.freeze()  # like the service after each load: collections skip the vocabularies and sessions
    per: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            per[name].append(_median_call_s(fn, args.seconds))
    base = statistics.median(per[next(iter(fns))])
    print(f"{args.candidates} candidates per call (real Criteo rows), {args.rounds} interleaved rounds x "
          f"{args.seconds:g} s per variant, medians; model {vdir}\n")  # fmt: skip
    print("| path | µs per request | candidates/s | speed-up vs python |\n|---|---:|---:|---:|")
    for name, ts in per.items():
        t = statistics.median(ts)
        print(f"| {name} | {t * 1e6:,.0f} | {args.candidates / t:,.0f} | {base / t:.2f}x |")


if __name__ == "__main__":
    main()
