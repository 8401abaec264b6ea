"""Reference tables generated from the code: error codes, settings (both halves) and metrics.

``python -m app.docs_gen`` rewrites the block between :data:`BEGIN` and :data:`END` in each page of :data:`PAGES`
(creating the page when missing) and leaves everything else in the file alone, so hand-written sections can sit
around the table. ``--check`` changes nothing and exits 1 naming the stale pages (a unit test runs it).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from app.errors import CATALOGUE
from app.settings import ENV_ONLY, Settings, env_vars_for, flag_for, is_benchmark_only

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- generated:begin (python -m app.docs_gen; edit outside these markers) -->"
END = "<!-- generated:end -->"
METRIC_KINDS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def errors_block() -> str:
    rows = ["| code | HTTP | gRPC | meaning |", "|---|---|---|---|"]
    for e in CATALOGUE.values():
        http = str(e.http_status) if e.http_status is not None else "varies"
        rows.append(f"| `{e.code}` | {http} | `{e.grpc_status}` | {_cell(e.meaning)} |")
    return "\n".join(rows)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "(computed)"
    value: Any = field.default
    if value is None:
        return "unset"
    if isinstance(value, Path):  # a default beside the checkout is shown relative to it (the page is shared)
        value = os.path.relpath(value, ROOT) if value.is_absolute() else str(value)
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def settings_rows(model: type[BaseSettings], prefix: str, with_flags: bool) -> list[str]:
    header = (
        "| setting | environment | CLI flag | default | description |"
        if with_flags
        else ("| setting | environment | default | description |")
    )
    rows = [header, "|---|---|---|---|---|" if with_flags else "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        envs = ", ".join(f"`{v}`" for v in env_vars_for(name, field, prefix))
        about = _cell(field.description or "").replace("``", "`")
        if is_benchmark_only(field):
            about = f"**Benchmark only** (leave on). {about}"
        cells = [f"`{name}`", envs]
        if with_flags:
            flag = flag_for(name)
            if flag is not None and field.annotation is bool:
                flag = flag.replace("--", "--[no-]", 1)
            cells.append(f"`{flag}`" if flag else f"env only: {_cell(ENV_ONLY[name])}")
        rows.append("| " + " | ".join([*cells, _default(field), about]) + " |")
    return rows


def settings_block() -> str:
    from compress.settings import CompressSettings

    service = settings_rows(Settings, "APP_", with_flags=True)
    toolkit = settings_rows(CompressSettings, "COMPRESS_", with_flags=False)
    return "\n".join(
        [
            "### Service (`python -m app`, `app/settings.py`)",
            "",
            "Precedence: CLI flag, then the first listed environment variable that is set, then the default. "
            "Per-model JSON (`models`) wins over the process-wide value.",
            "",
            *service,
            "",
            "### Offline toolkit (`python -m compress`, `compress/settings.py`)",
            "",
            "Shared variables (`APP_REDIS_URL`, `REDIS_URL`, `APP_REDIS_CHANNEL`) follow the service's rule: the "
            "`APP_` name wins, so both halves talk to the same Redis.",
            "",
            *toolkit,
        ]
    )


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: str
    labels: tuple[str, ...]
    help: str


def metric_definitions(root: Path = ROOT / "app") -> list[MetricDef]:
    """Every ``Counter``/``Gauge``/``Histogram("name", "help", [labels])`` in the source (found with ast, so a
    metric defined in any module, a task's included, is listed)."""
    found: dict[str, MetricDef] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            metric = _metric(node)
            if metric is not None:
                found[metric.name] = metric
    return sorted(found.values(), key=lambda m: m.name)


def _metric(node: ast.AST) -> MetricDef | None:
    if not isinstance(node, ast.Call):
        return None
    f = node.func
    kind = METRIC_KINDS.get(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    args = node.args
    if kind is None or len(args) < 2 or not all(isinstance(a, ast.Constant) for a in args[:2]):
        return None
    label_node = args[2] if len(args) > 2 else next((k.value for k in node.keywords if k.arg == "labelnames"), None)
    labels = ast.literal_eval(label_node) if label_node is not None else ()
    return MetricDef(str(_const(args[0])), kind, tuple(labels), str(_const(args[1])))


def _const(node: ast.expr) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def metrics_block() -> str:
    rows = ["| metric | type | labels | help |", "|---|---|---|---|"]
    for m in metric_definitions():
        names = ", ".join(f"`{m.name}{s}`" for s in SUFFIXES[m.kind])
        labels = ", ".join(f"`{label}`" for label in m.labels) or "none"
        rows.append(f"| {names} | {m.kind} | {labels} | {_cell(m.help)} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class Page:
    path: str
    title: str
    intro: str
    block: Callable[[], str]


PAGES = (
    Page("docs/reference/errors.md", "Error codes",
         "Every error answers with a machine-readable code: over HTTP in the body (`{\"error\": {\"code\", "
         "\"message\"}}` on task routes, `{\"error\", \"code\"}` on `/v2`), over gRPC as the trailing metadata "
         "`shopinfer-error-code` next to the status below. The table is `app/errors.py`'s `CATALOGUE`.",
         errors_block),
    Page("docs/reference/settings.md", "Settings",
         "Every setting of both halves, generated from the pydantic models.", settings_block),
    Page("docs/reference/metrics.md", "Metrics",
         "Every Prometheus metric the service exports on `GET /metrics` (merged over worker processes).",
         metrics_block),
)  # fmt: skip


def render(page: Page, current: str | None) -> str:
    """``current`` with its generated block replaced (a new page: title, intro and the block)."""
    block = f"{BEGIN}\n{page.block()}\n{END}"
    if current is None:
        return f"# {page.title}\n\n{page.intro}\n\n{block}\n"
    start, end = current.find(BEGIN), current.find(END)
    if start < 0 or end < start:
        return f"{current.rstrip()}\n\n{block}\n"
    return current[:start] + block + current[end + len(END) :]


def stale_pages(root: Path = ROOT, write: bool = False) -> list[str]:
    """The pages whose generated block differs from the code (rewritten when ``write``)."""
    stale = []
    for page in PAGES:
        path = root / page.path
        current = path.read_text() if path.exists() else None
        wanted = render(page, current)
        if wanted != current:
            stale.append(page.path)
            if write:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(wanted)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.docs_gen", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a page is stale")
    args = p.parse_args(argv)
    stale = stale_pages(write=not args.check)
    verb = "stale (run python -m app.docs_gen)" if args.check else "rewritten"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
