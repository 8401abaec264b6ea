"""Triton's C++ ONNX Runtime backend, built from its public sources against the ``onnxruntime`` wheel's library.

The ``tritonserver`` 2.51 binary in the PyTriton wheel carries only the python backend. Production Triton runs
ONNX models on ``onnxruntime_backend`` (C++), so this module builds that backend once into the peer cache:

* sources: ``onnxruntime_backend``, ``backend``, ``core`` and ``common`` at the release branch matching 2.51
  (``r24.10``), cloned from ``--triton-src`` (a URL/path template with ``{name}``; GitHub by default);
* ONNX Runtime: the shared library of the peer venv's ``onnxruntime`` wheel (the same version this project
  runs) and one public header, ``onnxruntime_c_api.h``, from ``--ort-header`` (``REPO@REV:PATH``; any API
  version up to the wheel's works, because ORT serves every older C API version);
* tools: ``git``, ``cmake``, a C++17 compiler, Debian's ``rapidjson-dev`` and ``googletest`` (Triton's common
  repository configures its unit tests unconditionally; the sources are used, nothing is downloaded).

Nothing is vendored into this repository. A missing tool or source stops the build with a message naming it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TRITON_BRANCH = "r24.10"  # Triton 2.51
REPOS = ("onnxruntime_backend", "backend", "core", "common")
DEFAULT_SRC = "https://github.com/triton-inference-server/{name}"
DEFAULT_HEADER = "https://github.com/microsoft/onnxruntime@v{ort}:include/onnxruntime/core/session/onnxruntime_c_api.h"
BACKEND_LIB = "libtriton_onnxruntime.so"


class BuildError(RuntimeError):
    """The backend cannot be built here; the message says what is missing."""


@dataclass(frozen=True)
class Sources:
    """Where the Triton repositories and the ORT C API header come from."""

    triton: str = DEFAULT_SRC
    ort_header: str = DEFAULT_HEADER


def _say(msg: str) -> None:
    print(f"[triton-ort build] {msg}", file=sys.stderr, flush=True)


def _run(argv: list[str], log: Path, cwd: Path | None = None) -> None:
    """Run a build step, printing a line every 30 s so a long compile is visibly alive."""
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        start = time.monotonic()
        while True:
            try:
                rc = proc.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                _say(f"still running ({time.monotonic() - start:.0f} s): {' '.join(argv[:3])} ...")
    if rc != 0:
        tail = log.read_text(errors="replace")[-2500:]
        raise BuildError(f"`{' '.join(argv)}` failed with exit code {rc}; see {log}\n{tail}")


def check_tools() -> None:
    """Fail with one message naming everything missing, before any clone or compile."""
    missing = [t for t in ("git", "cmake", "make", "c++") if shutil.which(t) is None]
    if not Path("/usr/include/rapidjson/rapidjson.h").is_file():
        missing.append("rapidjson headers (apt-get install rapidjson-dev)")
    if not Path("/usr/src/googletest/CMakeLists.txt").is_file():
        missing.append("googletest sources (apt-get install googletest)")
    if missing:
        raise BuildError("cannot build Triton's onnxruntime backend, missing: " + ", ".join(missing))


def _clone(url: str, dst: Path, log: Path, rev: str = TRITON_BRANCH) -> None:
    if (dst / ".git").is_dir():
        return
    shutil.rmtree(dst, ignore_errors=True)
    _say(f"cloning {url} ({rev})")
    _run(["git", "clone", "-q", "--depth", "1", "-b", rev, url, str(dst)], log)


def fetch_header(spec: str, dst: Path, log: Path) -> None:
    """``REPO@REV:PATH`` -> ``dst``: a sparse, blob-less clone, so a large repository costs one file."""
    try:
        repo, rest = spec.rsplit("@", 1)
        rev, path = rest.split(":", 1)
    except ValueError:
        raise BuildError(f"--ort-header must be REPO@REV:PATH, got {spec!r}") from None
    work = dst.parent / "ort-header-src"
    shutil.rmtree(work, ignore_errors=True)
    if Path(repo).exists():  # a local git directory: read the file at that revision directly
        res = subprocess.run(["git", "-C", repo, "show", f"{rev}:{path}"], capture_output=True)
        if res.returncode != 0:
            raise BuildError(f"cannot read {path} at {rev} in {repo}: {res.stderr.decode(errors='replace')}")
        dst.write_bytes(res.stdout)
        return
    _say(f"fetching {path} from {repo} at {rev}")
    _run(["git", "clone", "-q", "--depth", "1", "--filter=blob:none", "--sparse", "-b", rev, repo, str(work)], log)
    _run(["git", "-C", str(work), "sparse-checkout", "set", "--no-cone", path], log)
    shutil.copyfile(work / path, dst)


def ort_library(site_packages: Path) -> Path:
    """The ``libonnxruntime.so.X.Y.Z`` inside a venv's onnxruntime wheel."""
    found = sorted((site_packages / "onnxruntime" / "capi").glob("libonnxruntime.so.*"))
    if not found:
        raise BuildError(f"no libonnxruntime.so.* under {site_packages / 'onnxruntime' / 'capi'}")
    return found[0]


def build(cache: Path, site_packages: Path, ort_version: str, sources: Sources = Sources()) -> Path:
    """Build (once) and return the folder holding ``libtriton_onnxruntime.so`` and the ORT library."""
    lib = ort_library(site_packages)
    header_spec = sources.ort_header.format(ort=ort_version)
    key = hashlib.sha256(json.dumps([TRITON_BRANCH, sources.triton, header_spec, str(lib)]).encode()).hexdigest()
    root = cache / "triton-ort" / key[:12]
    out = root / "backend"
    if (out / BACKEND_LIB).is_file():
        return out
    check_tools()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "build.log"
    src = root / "src"
    src.mkdir(exist_ok=True)
    for name in REPOS:
        _clone(sources.triton.format(name=name), src / name, log)
    inc, libdir = root / "ort" / "include", root / "ort" / "lib"
    inc.mkdir(parents=True, exist_ok=True)
    libdir.mkdir(parents=True, exist_ok=True)
    fetch_header(header_spec, inc / "onnxruntime_c_api.h", log)
    link = libdir / "libonnxruntime.so"
    link.unlink(missing_ok=True)
    link.symlink_to(lib)
    build_dir = root / "build"
    build_dir.mkdir(exist_ok=True)
    _say(f"configuring (log: {log})")
    _run(["cmake", str(src / "onnxruntime_backend"), "-DCMAKE_BUILD_TYPE=Release", "-DTRITON_ENABLE_GPU=OFF",
          "-DTRITON_ENABLE_ONNXRUNTIME_TENSORRT=OFF", "-DTRITON_ENABLE_ONNXRUNTIME_OPENVINO=OFF",
          f"-DTRITON_ONNXRUNTIME_INCLUDE_PATHS={inc}", f"-DTRITON_ONNXRUNTIME_LIB_PATHS={libdir}",
          f"-DFETCHCONTENT_SOURCE_DIR_REPO-COMMON={src / 'common'}",
          f"-DFETCHCONTENT_SOURCE_DIR_REPO-CORE={src / 'core'}",
          f"-DFETCHCONTENT_SOURCE_DIR_REPO-BACKEND={src / 'backend'}",
          "-DFETCHCONTENT_SOURCE_DIR_GOOGLETEST=/usr/src/googletest", "-DFETCHCONTENT_FULLY_DISCONNECTED=ON"],
         log, cwd=build_dir)  # fmt: skip
    _say("compiling the backend (about a minute on 2 cores)")
    _run(["make", "-j2", "triton-onnxruntime-backend"], log, cwd=build_dir)
    out.mkdir(exist_ok=True)
    shutil.copy2(build_dir / BACKEND_LIB, out / BACKEND_LIB)
    (out / "libonnxruntime.so.1").unlink(missing_ok=True)
    (out / "libonnxruntime.so.1").symlink_to(lib)  # the backend's DT_NEEDED is the wheel's soname
    _say(f"built {out / BACKEND_LIB}")
    return out


def install(dist: Path, backend: Path, tritonserver_lib: Path) -> Path:
    """Make ``<dist>/backends/onnxruntime`` for ``--backend-directory``.

    The PyTriton wheel renames ``libtritonserver.so`` (auditwheel); the backend links the plain name, so a link
    beside it resolves to the same file the server already loaded.
    """
    target = dist / "backends" / "onnxruntime"
    target.mkdir(parents=True, exist_ok=True)
    for f in backend.iterdir():
        dst = target / f.name
        dst.unlink(missing_ok=True)
        dst.symlink_to(f.resolve())
    renamed = sorted(tritonserver_lib.glob("libtritonserver*.so"))
    if not renamed:
        raise BuildError(f"no libtritonserver*.so in {tritonserver_lib}")
    link = target / "libtritonserver.so"
    link.unlink(missing_ok=True)
    link.symlink_to(renamed[0])
    return target
