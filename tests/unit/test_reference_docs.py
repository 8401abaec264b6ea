"""The generated reference pages match the code, and the generator owns only its marked block."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from app.docs_gen import BEGIN, END, PAGES, main, metric_definitions, render, stale_pages
from app.metrics import Metrics


def test_reference_docs_are_fresh() -> None:
    stale = stale_pages()
    assert not stale, f"stale generated docs {stale}: run `python -m app.docs_gen` and commit the result"
    assert main(["--check"]) == 0


def test_hand_written_text_around_the_block_is_kept(tmp_path: Path) -> None:
    page = PAGES[0]
    current = f"# Mine\n\nhand-written intro\n\n{BEGIN}\nold table\n{END}\n\n## Appended by hand\n\ntext\n"
    out = render(page, current)
    assert out.startswith("# Mine\n\nhand-written intro\n\n" + BEGIN) and out.endswith(
        f"{END}\n\n## Appended by hand\n\ntext\n"
    )
    assert "old table" not in out and "`unknown_feature`" in out
    assert render(page, out) == out, "rendering twice changes nothing"
    unmarked = render(page, "# Someone's page\n\nprose\n")
    assert unmarked.startswith("# Someone's page\n\nprose\n\n" + BEGIN), unmarked[:200]


def test_check_mode_reports_a_stale_page_without_writing(tmp_path: Path) -> None:
    target = tmp_path / PAGES[1].path
    target.parent.mkdir(parents=True)
    target.write_text(f"# Settings\n\n{BEGIN}\nstale\n{END}\n")
    assert PAGES[1].path in stale_pages(tmp_path, write=False)
    assert "stale" in target.read_text()
    stale_pages(tmp_path, write=True)
    assert not stale_pages(tmp_path) and "`--max-body-bytes`" in target.read_text()


def test_the_metric_scan_matches_the_registered_service_metrics() -> None:
    """The ast scan is cross-checked against the real metric objects of :class:`Metrics` (names and labels)."""
    from prometheus_client.metrics import MetricWrapperBase

    metrics = Metrics(CollectorRegistry())
    real = {m._name: tuple(m._labelnames) for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    scanned = {m.name: m.labels for m in metric_definitions()}
    assert len(real) >= 12, real
    wrong = {name: (labels, scanned.get(name)) for name, labels in real.items() if scanned.get(name) != labels}
    assert not wrong, f"registered (labels) vs scanned: {wrong}"
    assert {"rec_events", "rec_feature_store_degraded"} <= set(scanned), sorted(scanned)
