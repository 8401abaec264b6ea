"""The error catalogue is complete and exact: every code raised in ``app/`` is listed with the status it is raised
with, and every listed code is raised somewhere. The raise sites are found by reading the source (ast), so a new
``InvalidInput(..., code="x")`` anywhere fails here until ``app/errors.py`` lists ``x``."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from app.api.errors import _HTTP_CODES
from app.errors import CATALOGUE, InvalidInput, Overloaded, PayloadTooLarge, ServiceError
from app.grpc import status as grpc_status

APP = Path(__file__).resolve().parents[2] / "app"
DYNAMIC_SITES = {"_http_error": {*_HTTP_CODES.values(), "http_error"}}
"""Raise sites whose code is not a literal, by enclosing function, and the codes they can produce."""


@dataclass(frozen=True)
class Site:
    code: str | None  # None: not a literal
    status: int | None  # None: not a literal
    where: str
    function: str


def _error_classes(trees: dict[Path, ast.Module]) -> dict[str, tuple[str, int]]:
    """Every ServiceError subclass defined in app/, with the (code, status) it inherits or sets."""
    own: dict[str, tuple[list[str], dict[str, object]]] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                attrs: dict[str, object] = {
                    t.id: s.value.value
                    for s in node.body
                    if isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant)
                    for t in s.targets
                    if isinstance(t, ast.Name)
                }
                own[node.name] = ([b.id for b in node.bases if isinstance(b, ast.Name)], attrs)
    known = {"ServiceError": (ServiceError.code, ServiceError.status)}
    changed = True
    while changed:
        changed = False
        for name, (bases, attrs) in own.items():
            base = next((b for b in bases if b in known), None)
            if name not in known and base is not None:
                code, status = known[base]
                known[name] = (str(attrs.get("code", code)), int(str(attrs.get("status", status))))
                changed = True
    return known


def _raise_sites() -> list[Site]:
    trees = {p: ast.parse(p.read_text(), str(p)) for p in sorted(APP.rglob("*.py")) if "generated" not in p.parts}
    classes = _error_classes(trees)
    sites: list[Site] = []
    for path, tree in trees.items():
        owner: dict[ast.AST, str] = {}  # node -> innermost enclosing function (outer ones are walked first)
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                owner.update((n, fn.name) for n in ast.walk(fn))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name not in classes:
                    continue
                kw = {k.arg: k.value for k in node.keywords}
                default_code, default_status = classes[name]
                code_node, status_node = kw.get("code"), kw.get("status")
                code = default_code if code_node is None else _literal(code_node)
                status = default_status if status_node is None else _literal(status_node)
                where = f"{path.relative_to(APP.parent)}:{node.lineno}"
                sites.append(
                    Site(
                        code if isinstance(code, str) else None,
                        status if isinstance(status, int) else None,
                        where,
                        owner.get(node, "<module>"),
                    )
                )
    return sites


def _literal(node: ast.expr) -> object:
    return node.value if isinstance(node, ast.Constant) else None


SITES = _raise_sites()


def _raised_codes() -> dict[str, list[str]]:
    raised: dict[str, list[str]] = {}
    for site in SITES:
        codes = {site.code} if site.code is not None else DYNAMIC_SITES.get(site.function, {f"<dynamic {site.where}>"})
        for code in codes:
            raised.setdefault(code, []).append(site.where)
    return raised


def test_the_scan_finds_the_raise_sites() -> None:
    """Guards the scanner itself: it must see the sites this test file knows exist."""
    raised = _raised_codes()
    for code in ("unknown_feature", "model_not_found", "overloaded", "message_too_long", "not_found", "internal"):
        assert code in raised, f"the ast scan found no raise site of {code!r}; it found {sorted(raised)}"
    assert len(SITES) > 50, f"only {len(SITES)} raise sites found"


def test_every_raised_code_is_in_the_catalogue() -> None:
    missing = {c: w for c, w in _raised_codes().items() if c not in CATALOGUE}
    assert not missing, f"codes raised but not listed in app/errors.py CATALOGUE (add them there): {missing}"


def test_every_catalogued_code_is_raised() -> None:
    unused = sorted(set(CATALOGUE) - set(_raised_codes()))
    assert not unused, f"codes in app/errors.py CATALOGUE that nothing in app/ raises (remove them): {unused}"


def test_raise_sites_use_the_catalogued_status() -> None:
    wrong = []
    for s in SITES:
        entry = CATALOGUE.get(s.code or "")
        if entry is not None and s.status is not None and entry.http_status not in (None, s.status):
            wrong.append(f"{s.where}: {s.code} raised with {s.status}, catalogue says {entry.http_status}")
    assert not wrong, "\n".join(wrong)


def test_non_literal_codes_are_only_the_known_dynamic_sites() -> None:
    dynamic = sorted(f"{s.function} at {s.where}" for s in SITES if s.code is None)
    assert {d.split(" at ")[0] for d in dynamic} <= set(DYNAMIC_SITES), (
        f"raise sites with a computed code (use a literal so the catalogue test can see it): {dynamic}"
    )


def test_task_routes_document_only_catalogued_codes_at_their_status() -> None:
    from app.tasks.registry import all_routes

    wrong = []
    for route in all_routes():
        for status, codes in route.errors.items():
            for code in (c.strip() for c in codes.split(",")):
                entry = CATALOGUE.get(code)
                if entry is None or entry.http_status != status:
                    wrong.append(f"{route.path}: {status} {code} (catalogue: {entry})")
    assert not wrong, wrong


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_grpc_status_is_the_catalogued_one(code: str) -> None:
    entry = CATALOGUE[code]
    exc = Overloaded("x") if code == "overloaded" else ServiceError("x", code=code, status=entry.http_status or 500)
    assert grpc_status.grpc_code(exc) is grpc.StatusCode[entry.grpc_status], f"{code}: {grpc_status.grpc_code(exc)}"


def test_uncatalogued_codes_fall_back_by_class() -> None:
    assert grpc_status.grpc_code(InvalidInput("x", code="not_in_catalogue")) is grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_status.grpc_code(ServiceError("x", code="not_in_catalogue")) is grpc.StatusCode.INTERNAL
    assert grpc_status.grpc_code(PayloadTooLarge("x", code="too_many_candidates")) is grpc.StatusCode.INVALID_ARGUMENT
