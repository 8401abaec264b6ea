"""The report plot: numbered labels never overlap (even for candidates that measure alike), and the selected
candidate is marked (gold ring on the plot, SELECTED in the legend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compress.report import _overlaps, place_labels, plot


def _boxes(points: list[tuple[float, float]], offsets: list[tuple[float, float]], w: float, h: float) -> list[Any]:
    return [(x + ox - w / 2, y + oy - h / 2, x + ox + w / 2, y + oy + h / 2) for (x, y), (ox, oy) in zip(points, offsets, strict=True)]  # fmt: skip


def test_labels_of_a_cluster_fan_out_without_overlapping_each_other_or_any_point() -> None:
    points = [(300.0, 200.0), (302.0, 201.0), (305.0, 198.0), (299.0, 203.0), (301.0, 199.5), (500.0, 50.0)]
    offsets = place_labels(points, [12.0] * len(points), (16, 13))
    boxes = _boxes(points, offsets, 16, 13)
    clashes = [(i, j) for i in range(len(boxes)) for j in range(i) if _overlaps(boxes[i], boxes[j])]
    assert not clashes, (clashes, offsets)
    covered = [
        (i, k)
        for i, b in enumerate(boxes)
        for k, (x, y) in enumerate(points)
        if _overlaps(b, (x - 3, y - 3, x + 3, y + 3))
    ]
    assert not covered, (covered, offsets)  # fmt: skip
    assert max(abs(o) for off in offsets for o in off) < 150, offsets  # still next to their markers


def _report() -> dict[str, Any]:
    names = ["fp32", "int8_dynamic", "int8_qdq", "emb_int8+int8_qdq"]
    return {
        "model": "ad-ctr",
        "selected": "emb_int8+int8_qdq",
        "select": {"batch_size": 64},
        "candidates": [
            {"name": n, "latency_ms": {"64": lat}, "metrics": {"auc": auc}, "bytes": size, "status": st}
            for n, lat, auc, size, st in zip(names, [4.1, 2.31, 2.29, 2.28], [0.781, 0.7799, 0.7801, 0.78],
                                             [40e6, 10e6, 10e6, 3e6], ["reference", "passed", "passed", "passed"], strict=True)
        ],
    }  # fmt: skip


def test_plot_marks_the_selected_candidate_in_the_legend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    legends: list[list[str]] = []
    real = matplotlib.axes.Axes.legend

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        legends.append([h.get_label() for h in kwargs["handles"]])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "legend", spy)
    out = plot(_report(), tmp_path / "plot.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert legends == [["1  fp32 (reference)", "2  int8_dynamic (passed)", "3  int8_qdq (passed)",
                        "4  emb_int8+int8_qdq (SELECTED)"]], legends  # fmt: skip
