"""Atomic, never-overwriting publication of a version into the model repository.

Files are written to ``<repo>/<model>/.staging-<uuid>/`` (invisible to readers, which only see integer folders
with a manifest), ``manifest.json`` is written last, everything is fsynced, and the folder is renamed to the
next free integer. ``rename`` onto an existing non-empty version fails, so a concurrent publisher retries with
the next number instead of overwriting.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from pydantic import ValidationError

from app.manifest import MANIFEST_FILE, Manifest
from app.repository import model_dir, next_version, sha256_file
from compress.errors import PublishError
from compress.notify import notify_published
from compress.settings import compress_settings

STAGING_PREFIX = ".staging-"
STAGING_MAX_AGE_S = 3600.0
log = logging.getLogger("compress")


def staging_max_age_s() -> float:
    """Staging folders older than this are crashed publishes (``COMPRESS_STAGING_MAX_AGE_S``, default 1 h)."""
    try:
        return compress_settings().staging_max_age_s
    except ValidationError as e:
        raise PublishError(f"COMPRESS_STAGING_MAX_AGE_S: {e.errors()[0]['msg']}") from None


class FileInfo(TypedDict):
    path: str
    sha256: str
    bytes: int


def file_info(version_dir: Path, rel: str) -> FileInfo:
    """``path``, ``sha256`` and ``bytes`` of a staged file, ready for an Artifact / AuxFile entry."""
    p = version_dir / rel
    return {"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size}


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(
    repo: Path, model: str, stage: Callable[[Path, int], Manifest], *, max_attempts: int = 20
) -> tuple[int, Path]:
    """Publish a new version of ``model``.

    ``stage(staging_dir, version)`` writes the version's files into ``staging_dir`` and returns its manifest
    (with ``version`` set to the number given); this function writes the manifest last and renames.
    Returns the published version number and folder.
    """
    mdir = model_dir(repo, model)
    mdir.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_staging(repo, model, staging_max_age_s()):
        log.warning("removed stale staging folder %s (a crashed publish)", stale)
    staging = mdir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        version = next_version(repo, model)
        manifest = stage(staging, version)
        for _ in range(max_attempts):
            manifest = manifest.model_copy(update={"version": version})
            (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
            _fsync_tree(staging)
            target = mdir / str(version)
            if not target.exists():
                try:
                    os.rename(staging, target)
                except OSError as e:
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                else:
                    _fsync_dir(mdir)
                    notify_published(model, version)
                    return version, target
            version = next_version(repo, model)
        raise PublishError(f"could not find a free version number for {model!r} after {max_attempts} attempts")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_stale_staging(repo: Path, model: str, older_than_s: float = STAGING_MAX_AGE_S) -> list[Path]:
    """Delete staging folders left by crashed publishers (they were never visible to readers)."""
    mdir = model_dir(repo, model)
    removed = []
    if mdir.is_dir():
        now = time.time()
        for p in mdir.glob(f"{STAGING_PREFIX}*"):
            if now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed
