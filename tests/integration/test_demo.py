"""The README's main command on a fresh machine without the shared data: a labelled synthetic CTR model is
built (so the service can still run), the chatbot is skipped, and a second call builds nothing."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import pytest

from app.repository import list_versions, load_verified
from compress.demo import ensure_demo_models


def test_demo_without_data_builds_a_labelled_synthetic_ctr_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "no-data-here"))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the synthetic log is written
    caplog.set_level(logging.INFO, logger="compress.stage")
    built = ensure_demo_models(tmp_path / "repo")
    assert len(built) == 1 and built[0].startswith("ad-ctr (SYNTHETIC data")
    assert f"{tmp_path / 'repo' / 'ad-ctr' / '2'}" in built[0] and "gate passed: auc" in built[0]
    assert list_versions(tmp_path / "repo", "chat-intent") == []
    assert "skipping chat-intent" in caplog.text and "SYNTHETIC" in caplog.text
    assert "${DATA_DIR}" not in caplog.text and str(tmp_path / "no-data-here" / "ctr") in caplog.text
    assert "[ad-ctr " in caplog.text and "candidate 2/" in caplog.text and "ETA" in caplog.text  # stage lines
    left = sorted(p.name for p in scratch.iterdir())
    assert not [n for n in left if n.startswith("demo-data-")], f"the synthetic log was left behind: {left}"
    versions = list_versions(tmp_path / "repo", "ad-ctr")
    for v in versions:
        _, manifest = load_verified(tmp_path / "repo", "ad-ctr", v)
        assert manifest.lineage.split["synthetic"] is True
        assert "SYNTHETIC" in manifest.lineage.data_files[0].path
    assert manifest.recipe["selection"]["rule"]["tie_break"]
    assert ensure_demo_models(tmp_path / "repo") == []


async def test_the_service_labels_a_synthetic_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever serves the demo's fallback model is told, in the log and in the v2 metadata."""
    from tests.fixtures.asgi import running_app
    from tests.fixtures.ctr_model import publish_ctr_version

    def synthetic(m: Any) -> Any:
        return m.model_copy(
            update={"lineage": m.lineage.model_copy(update={"split": {**m.lineage.split, "synthetic": True}})}
        )

    publish_ctr_version(tmp_path, seed=0)
    publish_ctr_version(tmp_path, seed=0, tweak=synthetic)
    caplog.set_level(logging.WARNING, logger="app.registry")
    async with running_app(tmp_path, default_latest_versions=2) as svc:
        meta2 = (await svc.client.get("/v2/models/ad-ctr/versions/2")).json()
        meta1 = (await svc.client.get("/v2/models/ad-ctr/versions/1")).json()
    assert meta2["parameters"] == {"synthetic_data": True} and "parameters" not in meta1
    assert "ad-ctr/2 was trained on SYNTHETIC demo data" in caplog.text and "ad-ctr/1 was" not in caplog.text
