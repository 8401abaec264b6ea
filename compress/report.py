"""``compress report``: one table of size / latency / accuracy for every candidate, and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.manifest import Manifest
from app.repository import list_versions, model_dir, read_manifest
from compress.errors import CompressError


def load_report(repo: Path, model: str, version: int | None = None) -> tuple[int, Manifest, dict[str, Any]]:
    """The run report stored with a published version (default: the latest)."""
    versions = list_versions(repo, model)
    if not versions:
        raise CompressError(f"model {model!r} has no published versions in {repo}")
    v = versions[-1] if version is None else version
    if v not in versions:
        raise CompressError(f"model {model!r} has no version {v} in {repo} (versions: {versions})")
    vdir = model_dir(repo, model) / str(v)
    manifest = read_manifest(vdir)
    return v, manifest, json.loads((vdir / manifest.aux("report").path).read_text())


def markdown(report: dict[str, Any]) -> str:
    cands = report["candidates"]
    ref = next(c for c in cands if c["status"] == "reference")
    sizes = sorted({k for c in cands for k in c["latency_ms"]}, key=int)
    metrics = list(ref["metrics"])
    head = [
        "candidate",
        "status",
        "bytes",
        "x smaller",
        *[f"ms@{b}" for b in sizes],
        *metrics,
        *[f"Δ{m}" for m in metrics],
        "kept FP32",
        "note",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cands:
        m = c["metrics"]
        rejected = (report.get("selection") or {}).get("rejected", {})
        note = c["error"] or ((c["gate"] or {}).get("reason") or "") or rejected.get(c["name"], "")
        if c["name"] == report.get("selected"):
            note = ("**selected** " + note).strip()
        row = [
            c["name"],
            c["status"],
            f"{c['bytes']:,}",
            f"{ref['bytes'] / c['bytes']:.2f}" if c["bytes"] else "-",
            *[f"{c['latency_ms'][b]:.3f}" if b in c["latency_ms"] else "-" for b in sizes],
            *[f"{m[k]:.5f}" if k in m else "-" for k in metrics],
            *[f"{m[k] - ref['metrics'][k]:+.5f}" if k in m else "-" for k in metrics],
            ", ".join(c["kept_fp32"]) or "-",
            note.replace("|", "/"),
        ]
        lines.append("| " + " | ".join(row) + " |")
    base = report.get("baseline") or {}
    if base:
        lines.append("")
        lines.append(
            "Non-neural baseline on the same test rows: "
            + ", ".join(f"{k} {v:.5f}" for k, v in base.items() if isinstance(v, float))
        )
    lines.append(
        f"Gate: {report.get('gate_rule')}. TensorRT: {report.get('tensorrt', {}).get('status')} "
        f"({report.get('tensorrt', {}).get('reason') or 'ok'})."
    )
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path) -> Path:
    """Accuracy (first metric) vs latency at the selection batch size; marker area ~ bytes on disk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cands = [c for c in report["candidates"] if c["latency_ms"]]
    b = str(report.get("select", {}).get("batch_size", 64))
    metric = next(iter(cands[0]["metrics"]))
    biggest = max(c["bytes"] for c in cands)
    colors = {"reference": "black", "passed": "tab:green", "failed": "tab:red", "error": "grey"}
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for c in cands:
        ax.scatter(
            c["latency_ms"][b],
            c["metrics"][metric],
            s=40 + 800 * c["bytes"] / biggest,
            c=colors[c["status"]],
            alpha=0.6,
            edgecolors="k",
        )
        ax.annotate(
            c["name"], (c["latency_ms"][b], c["metrics"][metric]), fontsize=7, xytext=(4, 4), textcoords="offset points"
        )
    ax.set_xlabel(f"ORT CPU latency at batch {b} (ms, 1 thread)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{report['model']}: accuracy vs latency (marker area ~ bytes; green passed, red failed)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
