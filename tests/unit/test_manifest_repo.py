"""The manifest schema (checked-in JSON Schema), repository reading/verification, and atomic publishing."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.manifest import Artifact, AuxFile, Gate, Lineage, Manifest, TensorSpec
from app.repository import (
    RepositoryError,
    RepositoryUnreadable,
    Scan,
    fingerprint,
    list_versions,
    load_verified,
    model_dir,
    recheck_files,
    scan_repository,
)
from compress.publish import file_info, publish, remove_stale_staging

ROOT = Path(__file__).resolve().parents[2]


def make_manifest(d: Path, version: int, name: str = "m") -> Manifest:
    (d / "model.onnx").write_bytes(b"not really onnx " + str(version).encode())
    (d / "pre.json").write_text("{}")
    return Manifest(
        name=name,
        version=version,
        task="generic",
        created_at=datetime.now(UTC),
        inputs=[TensorSpec(name="x", dtype="FP32", shape=[-1, 3])],
        outputs=[TensorSpec(name="y", dtype="FP32", shape=[-1, 1])],
        artifacts=[Artifact(format="onnx", precision="fp32", **file_info(d, "model.onnx"))],
        aux_files=[AuxFile(role="preprocess", **file_info(d, "pre.json"))],
        metrics={"candidate": {"auc": 0.7}, "fp32": {"auc": 0.7}},
        gate=Gate(passed=True, rule="r", numbers={}),
        recipe={},
        lineage=Lineage(code_version="test"),
        candidate="fp32",
    )


def test_checked_in_json_schema_matches_the_pydantic_model() -> None:
    checked_in = json.loads((ROOT / "model_repo" / "manifest.schema.json").read_text())
    assert checked_in == Manifest.model_json_schema(), "run: python -m app.manifest > model_repo/manifest.schema.json"


@pytest.mark.parametrize("path", ["../x.onnx", "/etc/passwd", "a/../../b"])
def test_artifact_paths_cannot_leave_the_version_folder(path: str) -> None:
    with pytest.raises(ValidationError, match="inside the version folder"):
        Artifact(path=path, format="onnx", precision="fp32", sha256="0", bytes=1)


def test_tensorrt_artifact_needs_its_gpu_and_trt_keys() -> None:
    with pytest.raises(ValidationError, match="compute_capability"):
        Artifact(path="m.plan", format="tensorrt", precision="int8", sha256="0", bytes=1)


def test_model_names_cannot_escape_the_repository(tmp_path: Path) -> None:
    for bad in ["..", "../etc", "a/b", ".hidden", ""]:
        with pytest.raises(RepositoryError):
            model_dir(tmp_path, bad)


def test_publish_is_atomic_versioned_and_verifiable(tmp_path: Path) -> None:
    v1, d1 = publish(tmp_path, "m", lambda d, v: make_manifest(d, v))
    v2, d2 = publish(tmp_path, "m", lambda d, v: make_manifest(d, v))
    assert (v1, v2) == (1, 2) and list_versions(tmp_path, "m") == [1, 2]
    before = (d1 / "model.onnx").read_bytes()
    ref, manifest = load_verified(tmp_path, "m", 2)
    assert manifest.version == 2 and ref.path == d2
    assert (d1 / "model.onnx").read_bytes() == before  # older version untouched


def test_corrupt_artifact_fails_verification(tmp_path: Path) -> None:
    _, d = publish(tmp_path, "m", lambda d, v: make_manifest(d, v))
    data = bytearray((d / "model.onnx").read_bytes())
    data[0] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(RepositoryError) as e:
        load_verified(tmp_path, "m", 1)
    assert e.value.reason == "checksum"


def test_interrupted_publish_leaves_no_visible_version(tmp_path: Path) -> None:
    def crash(d: Path, v: int) -> Manifest:
        make_manifest(d, v)
        raise KeyboardInterrupt  # e.g. Ctrl-C half way through staging

    with pytest.raises(KeyboardInterrupt):
        publish(tmp_path, "m", crash)
    assert list_versions(tmp_path, "m") == []
    # a publisher killed -9 leaves its staging folder behind: still invisible, and cleaned up later
    stale = tmp_path / "m" / ".staging-dead"
    stale.mkdir()
    make_manifest(stale, 1)
    assert list_versions(tmp_path, "m") == []
    assert remove_stale_staging(tmp_path, "m", older_than_s=-1) == [stale]


def test_concurrent_publishers_never_overwrite(tmp_path: Path) -> None:
    results: list[int] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        def stage(d: Path, v: int) -> Manifest:
            barrier.wait(timeout=10)  # all four compute the same next version before renaming
            return make_manifest(d, v)

        results.append(publish(tmp_path, "m", stage)[0])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [1, 2, 3, 4]
    for v in results:
        load_verified(tmp_path, "m", v)


def test_publish_removes_only_stale_staging_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import time

    (tmp_path / "m").mkdir()
    old, fresh = tmp_path / "m" / ".staging-old", tmp_path / "m" / ".staging-fresh"
    old.mkdir()
    fresh.mkdir()
    hours_ago = time.time() - 7200
    os.utime(old, (hours_ago, hours_ago))
    monkeypatch.setenv("COMPRESS_STAGING_MAX_AGE_S", "3600")
    publish(tmp_path, "m", lambda d, v: make_manifest(d, v))
    assert not old.exists() and fresh.exists()  # a concurrent publisher's folder is left alone


def test_newer_manifest_schema_is_refused_with_a_clear_reason(tmp_path: Path) -> None:
    _, d = publish(tmp_path, "m", lambda d, v: make_manifest(d, v))
    raw = json.loads((d / "manifest.json").read_text())
    raw["schema_version"] = 99
    raw["field_from_the_future"] = True
    (d / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(RepositoryError) as e:
        load_verified(tmp_path, "m", 1)
    assert e.value.reason == "unsupported_schema" and "schema_version 99" in str(e.value)


def test_a_scan_tells_a_missing_or_unlistable_root_from_an_empty_one(tmp_path: Path) -> None:
    with pytest.raises(RepositoryUnreadable) as e:
        scan_repository(tmp_path / "nope")
    assert e.value.reason == "missing"
    (tmp_path / "file").write_text("x")
    with pytest.raises(RepositoryUnreadable) as e:
        scan_repository(tmp_path / "file")
    assert e.value.reason == "unreadable"
    publish(tmp_path / "repo", "m", lambda d, v: make_manifest(d, v))
    (tmp_path / "repo" / "m" / "7").mkdir()  # a numbered folder without a manifest is not published
    assert scan_repository(tmp_path / "repo") == Scan({"m": [1]}, {})


def test_recheck_files_sees_deleted_and_changed_files_but_not_a_touch(tmp_path: Path) -> None:
    _, d = publish(tmp_path, "m", lambda d, v: make_manifest(d, v))
    _, manifest = load_verified(tmp_path, "m", 1)
    known = fingerprint(d, manifest)
    os.utime(d / "model.onnx", ns=(1, 1))  # metadata only: re-hashed, still intact
    assert recheck_files(d, manifest, known) is None
    (d / "pre.json").unlink()
    assert recheck_files(d, manifest, known) == ("missing_file", "m/1/pre.json was deleted")
    data = bytearray((d / "model.onnx").read_bytes())
    data[0] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(data))  # same size, new content
    found = recheck_files(d, manifest, known)
    assert found is not None and found[0] == "checksum", found
