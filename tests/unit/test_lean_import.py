"""Importing the contract modules must not drag in the web framework or the inference engine."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["fastapi", "starlette", "onnxruntime", "torch", "uvicorn", "redis", "prometheus_client"]


def _imported_after(statement: str) -> dict[str, bool]:
    code = f"import json, sys\n{statement}\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_app_and_manifest_are_lean() -> None:
    loaded = _imported_after(
        "import app, app.manifest, app.repository, app.errors, app.settings, app.tasks.ctr.features"
    )
    assert not any(loaded.values()), loaded


def test_runtime_and_batching_do_not_import_onnxruntime() -> None:
    loaded = _imported_after("import app.runtime.onnx, app.batching, app.protocol")
    assert not loaded["onnxruntime"] and not loaded["fastapi"], loaded


def test_building_the_app_does_not_import_onnxruntime() -> None:
    loaded = _imported_after(
        "from app.main import create_app\nfrom app.settings import Settings\ncreate_app(Settings())"
    )
    assert loaded["fastapi"] and not loaded["onnxruntime"], loaded
