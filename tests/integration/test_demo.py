"""The README's main command on a fresh machine without the shared data: a labelled synthetic CTR model is
built (so the service can still run), the chatbot is skipped, and a second call builds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.repository import list_versions, load_verified
from compress.demo import ensure_demo_models


def test_demo_without_data_builds_a_labelled_synthetic_ctr_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "no-data-here"))
    built = ensure_demo_models(tmp_path / "repo")
    assert len(built) == 1 and built[0].startswith("ad-ctr")
    assert list_versions(tmp_path / "repo", "chat-intent") == []
    assert "skipping chat-intent" in caplog.text and "SYNTHETIC" in caplog.text
    versions = list_versions(tmp_path / "repo", "ad-ctr")
    _, manifest = load_verified(tmp_path / "repo", "ad-ctr", versions[-1])
    assert "SYNTHETIC" in manifest.lineage.data_files[0].path
    assert ensure_demo_models(tmp_path / "repo") == []
