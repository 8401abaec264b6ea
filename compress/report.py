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


def print_outcome(report: dict[str, Any], model: str, published: dict[str, int]) -> None:
    """What ``compress run`` / ``compress import`` print at the end: the candidates table, then each published
    version."""
    print(markdown(report))
    for name, version in published.items():
        print(f"published {model}/{version} ({name})")


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
        "flips",
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
            _flips(c.get("robustness") or {}),
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
    lines.append(robustness_line(report.get("robustness") or {}))
    lines.append(
        f"Gate: {report.get('gate_rule')}. TensorRT: {report.get('tensorrt', {}).get('status')} "
        f"({report.get('tensorrt', {}).get('reason') or 'ok'})."
    )
    return "\n".join(lines)


def _flips(r: dict[str, Any]) -> str:
    """A candidate's flip rate in percent (``-`` when not measured)."""
    return f"{100 * r['flip_rate']:.2f} %" if r.get("flip_rate") is not None else "-"


def robustness_line(r: dict[str, Any]) -> str:
    """The robustness gate in one sentence: what was perturbed, what a flip is, and the rule (or why skipped)."""
    if not r:
        return "Robustness: not measured (report written before the robustness gate)."
    if "set" not in r:
        return f"Robustness: skipped ({r.get('skipped', 'no perturbation set')})."
    s = r["set"]
    return (
        f"Robustness ('flips' column): {s['perturbed_rows']} perturbed copies of {s['clean_rows']} test rows "
        f"({', '.join(s['kinds'])}, seed {r['seed']}; one flip = {100 / max(s['perturbed_rows'], 1):.2f} pp); "
        f"a flip: {s['definition'] or s['decision']}. Rule: flip rate <= FP32's + {100 * r['max_flip_increase']:.2f} pp"
        + (
            f", unless the excess is chance (paired exact test, p >= {r['flip_significance']:g})."
            if r.get("flip_significance", 1.0) < 1.0
            else "."
        )
    )


DPI = 110
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(
    points: list[tuple[float, float]], radii: list[float], size: tuple[float, float]
) -> list[tuple[float, float]]:
    """Pixel offsets for one ``size`` label per point so that no two labels overlap and none covers a point.

    Greedy: each label tries eight directions at growing distances from its marker (radius ``radii[i]``) and
    takes the first spot free of the labels placed so far and of every point's centre. Candidates that measure
    alike sit on top of each other; their labels fan out around them instead of printing over one another.
    """
    w, h = size
    placed: list[Box] = []
    centres = [(x - 3, y - 3, x + 3, y + 3) for x, y in points]
    out = []
    directions = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    for (x, y), r in zip(points, radii, strict=True):
        spots = [
            (
                dx * (r + step + w / 2) / (2**0.5 if dx and dy else 1),
                dy * (r + step + h / 2) / (2**0.5 if dx and dy else 1),
            )
            for step in (2, 10, 20, 32, 46, 62, 80)
            for dx, dy in directions
        ]
        for ox, oy in spots:
            box = (x + ox - w / 2, y + oy - h / 2, x + ox + w / 2, y + oy + h / 2)
            if not any(_overlaps(box, b) for b in placed + centres):
                break
        placed.append(box)
        out.append((ox, oy))
    return out


def plot(report: dict[str, Any], out: Path) -> Path:
    """Accuracy (first metric) vs latency at the selection batch size; marker area ~ bytes on disk.

    Markers are numbered (labels placed so they never overlap) and the legend names each number; the selected
    candidate wears a gold ring and a star in the legend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    cands = [c for c in report["candidates"] if c["latency_ms"]]
    b = str(report.get("select", {}).get("batch_size", 64))
    metric = next(iter(cands[0]["metrics"]))
    biggest = max(c["bytes"] for c in cands)
    colors = {"reference": "black", "passed": "tab:green", "failed": "tab:red", "error": "grey"}
    selected = report.get("selected")
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=DPI)
    xy = [(c["latency_ms"][b], c["metrics"][metric]) for c in cands]
    areas = [40 + 800 * c["bytes"] / biggest for c in cands]
    for c, (x, y), area in zip(cands, xy, areas, strict=True):
        ax.scatter(x, y, s=area, c=colors[c["status"]], alpha=0.55, edgecolors="k", zorder=2)
        if c["name"] == selected:
            ax.scatter(x, y, s=area + 260, facecolors="none", edgecolors="gold", linewidths=3, zorder=3)
    ax.margins(0.12)
    ax.set_xlabel(f"ORT CPU latency at batch {b} (ms, 1 thread)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{report['model']}: accuracy vs latency (marker area ~ bytes; gold ring: selected)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.7, 1))
    fig.canvas.draw()  # fixes the data -> pixel transform the labels are placed in
    pixels = [(float(px), float(py)) for px, py in ax.transData.transform(xy)]
    radii = [(a / 3.1416) ** 0.5 * DPI / 72 for a in areas]
    offsets = place_labels(pixels, radii, (16, 13))
    for i, ((x, y), (ox, oy)) in enumerate(zip(xy, offsets, strict=True), 1):
        ax.annotate(str(i), (x, y), xytext=(ox, oy), textcoords="offset pixels", ha="center", va="center",
                    fontsize=8, fontweight="bold" if cands[i - 1]["name"] == selected else "normal",
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4", "shrinkA": 0, "shrinkB": 0})  # fmt: skip
    handles = [
        Line2D([], [], linestyle="", marker="*" if c["name"] == selected else "o", markersize=9,
               markerfacecolor="gold" if c["name"] == selected else colors[c["status"]], markeredgecolor="k",
               label=f"{i}  {c['name']} ({'SELECTED' if c['name'] == selected else c['status']})")
        for i, c in enumerate(cands, 1)
    ]  # fmt: skip
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7, frameon=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out
