"""The docs are a manual: no history wording, no broken links between them, and the CLI and compress-config
references name every option and key the code has (history belongs in CHANGELOG.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from compress import config_reference
from compress.cli import build_parser
from compress.config import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"
MANUAL = sorted([PROJECT_ROOT / "README.md", PROJECT_ROOT / "model_repo" / "README.md", *DOCS.rglob("*.md")])
GENERATED_ELSEWHERE = {DOCS / "reference" / name for name in ("settings.md", "metrics.md", "errors.md")}
"""Written by the reference generator from the code; a link to one of them is accepted before it is generated."""

HISTORY = re.compile(
    r"\bround\b(?![- ](?:trip|up|down))|\bre-?measured\b|\bpreviously\b|\bearlier\b|\bissue\b|\bthis change\b"
    r"|\b(?:previous|next|this|last|that) session\b",
    re.IGNORECASE,
)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def prose(path: Path) -> str:
    """The file without its fenced code blocks (commands and samples are not prose, nor link targets)."""
    return FENCE.sub("", path.read_text())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower()).replace("_", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in prose(path).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if m:
            base = slug(m.group(1))
            n, name = 0, base
            while name in found:
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def rel(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT))


@pytest.mark.parametrize("doc", MANUAL, ids=rel)
def test_the_manual_has_no_history_wording(doc: Path) -> None:
    hits = [
        f"line {n}: {line.strip()[:100]}"
        for n, line in enumerate(doc.read_text().splitlines(), 1)
        if HISTORY.search(line)
    ]
    assert not hits, f"{rel(doc)} reads like a history (move it to CHANGELOG.md): {hits}"


@pytest.mark.parametrize("doc", [*MANUAL, PROJECT_ROOT / "CHANGELOG.md"], ids=rel)
def test_relative_links_resolve_to_files_and_headings(doc: Path) -> None:
    broken = []
    for target in LINK.findall(prose(doc)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if dest in GENERATED_ELSEWHERE and not dest.exists():
            continue
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {rel(dest)})")
    assert not broken, f"{rel(doc)} has broken links: {broken}"


def test_the_link_checker_sees_a_broken_link_and_a_missing_heading(tmp_path: Path) -> None:
    doc = tmp_path / "a.md"
    doc.write_text("# Title\n\n[ok](#title) [gone](b.md) [bad](#nope)\n")
    assert anchors(doc) == {"title"}, f"anchors of a one-heading file: {anchors(doc)}"
    targets = LINK.findall(prose(doc))
    assert targets == ["#title", "b.md", "#nope"], f"links found: {targets}"
    assert slug("Ad scoring (`POST /v1/ads/ctr`)") == "ad-scoring-post-v1adsctr"


def test_history_words_are_caught_and_ordinary_words_are_not() -> None:
    caught = ["as in round 2", "re-measured at", "Previously it", "an earlier run", "issue 11", "previous session"]
    fine = ["3 interleaved rounds", "one round trip per batch", "an anonymous session sends", "session.run"]
    assert all(HISTORY.search(s) for s in caught), [s for s in caught if not HISTORY.search(s)]
    assert not any(HISTORY.search(s) for s in fine), [s for s in fine if HISTORY.search(s)]


def test_the_cli_reference_names_every_compress_command_and_option() -> None:
    text = (DOCS / "reference" / "cli.md").read_text()
    parser = build_parser()
    missing = [o for a in parser._actions for o in a.option_strings if o not in text and o != "-h"]
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():  # type: ignore[union-attr]
            if f"`{name}`" not in text and f"compress {name}" not in text:
                missing.append(name)
            missing += [f"{name} {o}" for a in sub._actions for o in a.option_strings if o not in text and o != "-h"]
    assert not missing, f"docs/reference/cli.md does not name: {missing}"


def test_the_cli_reference_names_every_service_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "app", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"python -m app --help exited {out.returncode}: {out.stderr[-500:]}"
    flags = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", out.stdout)) - {"--help"})
    settings = DOCS / "reference" / "settings.md"
    text = (DOCS / "reference" / "cli.md").read_text() + (settings.read_text() if settings.exists() else "")
    # settings.md writes an on/off flag once as ``--[no-]name``: it documents both forms
    text += " ".join(f"--{n} --no-{n}" for n in re.findall(r"--\[no-\]([a-z0-9-]+)", text))
    missing = [f for f in flags if f not in text]
    assert len(flags) >= 5, f"parsed only {flags} from: {out.stdout[:500]}"
    assert not missing, f"flags of python -m app documented in neither cli.md nor settings.md: {missing}"


def test_the_config_reference_is_generated_from_the_current_schemas() -> None:
    stale = config_reference.PAGE.read_text() != config_reference.page()
    assert not stale, (
        "docs/reference/compress-config.md differs from the schemas: run python -m compress.config_reference --write"
    )
    tables = config_reference.generate()
    assert tables.count("| `") >= 100, f"only {tables.count('| `')} keys in the generated reference"
