"""Read side of the model repository: find models and versions, load and verify manifests.

Layout: ``<root>/<model>/<int version>/manifest.json``. Folders whose name is not a positive integer (e.g. the
``.staging-*`` folders of an in-progress publish) are invisible, which is what makes publishing atomic.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from app.ints import parse_ascii_int
from app.manifest import MANIFEST_FILE, MODEL_NAME_RE, SCHEMA_VERSION, Artifact, AuxFile, Manifest


class RepositoryError(Exception):
    """A model or version could not be found or failed verification; ``reason`` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_dir(root: Path, model: str) -> Path:
    """The folder of ``model``; refuses names that could escape ``root``."""
    if not MODEL_NAME_RE.match(model):
        raise RepositoryError("invalid_name", f"model name {model!r} is not a valid model name")
    return root / model


def list_versions(root: Path, model: str) -> list[int]:
    """Published versions of ``model`` (folders with a manifest), ascending."""
    d = model_dir(root, model)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        version = version_number(p.name)
        if version is not None and p.is_dir() and (p / MANIFEST_FILE).is_file():
            out.append(version)
    return sorted(out)


class RepositoryUnreadable(Exception):
    """The repository root could not be listed (missing, not a folder, EACCES, I/O error): a storage fault,
    never a statement that the models are gone. ``reason`` is machine-readable (``missing`` / ``unreadable``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Scan:
    """One listing of the repository: published versions per readable model, and the models whose folder could
    not be read (name -> error), which say nothing about their versions."""

    versions: dict[str, list[int]]
    unreadable: dict[str, str]


def scan_repository(root: Path) -> Scan:
    """List every model and its published versions, telling "gone" apart from "could not look".

    ``list_versions`` answers ``[]`` for anything it cannot read; a caller that retires what it
    no longer sees needs the difference, so errors other than "no such file" are raised or reported here."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        raise RepositoryUnreadable("missing", f"the model repository {root} does not exist") from None
    except OSError as e:
        raise RepositoryUnreadable(
            "unreadable", f"cannot list the model repository {root}: {e.strerror or e}"
        ) from None
    versions: dict[str, list[int]] = {}
    unreadable: dict[str, str] = {}
    for entry in entries:
        if not MODEL_NAME_RE.match(entry.name):
            continue
        try:
            if not entry.is_dir():
                continue
            versions[entry.name] = _published_versions(Path(entry.path))
        except FileNotFoundError:
            continue  # removed between the listing and now
        except OSError as e:
            unreadable[entry.name] = f"cannot read {entry.name}/: {e.strerror or e}"
    return Scan(versions, unreadable)


def _published_versions(folder: Path) -> list[int]:
    """Versions with a manifest; an unreadable version folder or manifest raises (it is not "unpublished")."""
    out = []
    for entry in os.scandir(folder):
        version = version_number(entry.name)
        if version is None or not entry.is_dir():
            continue
        try:
            os.stat(Path(entry.path) / MANIFEST_FILE)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                continue  # a numbered folder without a manifest is not published
            raise
        out.append(version)
    return sorted(out)


def version_number(folder: str) -> int | None:
    """The version a folder name stands for (ASCII digits, >= 1), else None: '²' or '٢' are not versions."""
    return parse_ascii_int(folder, 1)


def next_version(root: Path, model: str) -> int:
    """One past the highest numbered folder (with or without manifest), so a version number is never reused."""
    d = model_dir(root, model)
    nums = [n for p in d.iterdir() if (n := parse_ascii_int(p.name)) is not None] if d.is_dir() else []
    return max(nums, default=0) + 1


def shown(path: Path, parts: int = 3) -> str:
    """``model/version/file`` for messages: reasons are served by ``/v2/repository/index``, host paths are not."""
    return "/".join(path.parts[-parts:])


def read_manifest(version_dir: Path) -> Manifest:
    path = version_dir / MANIFEST_FILE
    name = shown(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise RepositoryError("missing_manifest", f"{name} does not exist") from None
    except json.JSONDecodeError as e:
        raise RepositoryError("bad_manifest", f"{name} is not valid JSON: {e}") from None
    found = raw.get("schema_version", SCHEMA_VERSION) if isinstance(raw, dict) else SCHEMA_VERSION
    if isinstance(found, int) and not isinstance(found, bool) and found > SCHEMA_VERSION:
        raise RepositoryError(
            "unsupported_schema",
            f"{name} uses manifest schema_version {found}; this service reads up to "
            f"{SCHEMA_VERSION}: upgrade the service before publishing with a newer compress",
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as e:
        raise RepositoryError("bad_manifest", f"{name} does not match the manifest schema: {e}") from None
    folder_version = parse_ascii_int(version_dir.name)
    if folder_version is not None and manifest.version != folder_version:
        raise RepositoryError(
            "bad_manifest", f"{name} says version {manifest.version} but lives in folder {version_dir.name}"
        )
    return manifest


def verify_files(version_dir: Path, manifest: Manifest) -> None:
    """Check size and sha256 of every artifact and aux file; raises ``RepositoryError('checksum', ...)``."""
    entries: list[Artifact | AuxFile] = [*manifest.artifacts, *manifest.aux_files]
    for entry in entries:
        path = version_dir / entry.path
        if not path.is_file():
            raise RepositoryError("missing_file", f"{shown(path)} is listed in the manifest but missing")
        size = path.stat().st_size
        if size != entry.bytes:
            raise RepositoryError("checksum", f"{shown(path)}: {size} bytes on disk, manifest says {entry.bytes}")
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise RepositoryError("checksum", f"{shown(path)}: sha256 {digest[:12]}… does not match the manifest")


@dataclass(frozen=True)
class VersionRef:
    model: str
    version: int
    path: Path


def load_verified(root: Path, model: str, version: int) -> tuple[VersionRef, Manifest]:
    """Read and fully verify one version; the single entry point the service uses before loading."""
    path = model_dir(root, model) / str(version)
    manifest = read_manifest(path)
    if manifest.name != model:
        raise RepositoryError(
            "bad_manifest", f"{shown(path, 2)}: manifest names model {manifest.name!r}, folder {model!r}"
        )
    verify_files(path, manifest)
    return VersionRef(model, version, path), manifest


Fingerprint = dict[str, tuple[int, int, int]]
"""``relative path -> (size, mtime_ns, inode)`` of a version's files: a cheap "has anything changed" check."""


def fingerprint(version_dir: Path, manifest: Manifest) -> Fingerprint:
    out: Fingerprint = {}
    entries: list[Artifact | AuxFile] = [*manifest.artifacts, *manifest.aux_files]
    for entry in entries:
        st = (version_dir / entry.path).stat()
        out[entry.path] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def recheck_files(version_dir: Path, manifest: Manifest, known: Fingerprint) -> tuple[str, str] | None:
    """``(reason, message)`` when a file of a loaded version was deleted or changed content since ``known``;
    None when intact. Only files whose size, mtime or inode moved are hashed again (a ``touch`` is not a fault).
    Errors other than "no such file" are storage faults, not evidence: they count as intact (the caller's scan
    reports them)."""
    entries: list[Artifact | AuxFile] = [*manifest.artifacts, *manifest.aux_files]
    for entry in entries:
        path = version_dir / entry.path
        try:
            st = path.stat()
            if (st.st_size, st.st_mtime_ns, st.st_ino) == known.get(entry.path):
                continue
            if st.st_size != entry.bytes:
                return "checksum", f"{shown(path)}: {st.st_size} bytes on disk, manifest says {entry.bytes}"
            if sha256_file(path) != entry.sha256:
                return "checksum", f"{shown(path)}: content no longer matches the manifest's sha256"
        except FileNotFoundError:
            return "missing_file", f"{shown(path)} was deleted"
        except OSError:
            continue
        known[entry.path] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return None
