"""Private virtual environments for the peer servers, so their pins never touch the project's venv.

Each peer gets ``<cache>/<name>/`` made with the same base interpreter as this process; a stamp file records
what was installed, so a second run reuses the venv. ONNX Runtime is pinned to the version this process has,
so every server runs the model with the same kernels.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

STAMP = "installed.json"


@dataclass(frozen=True)
class PeerEnv:
    """A venv for one peer: where it is and what ``pip install`` puts into it."""

    name: str
    requirements: tuple[str, ...]

    def root(self, cache: Path) -> Path:
        return cache / self.name

    def python(self, cache: Path) -> Path:
        return self.root(cache) / "bin" / "python"

    def site_packages(self, cache: Path) -> Path:
        ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.root(cache) / "lib" / ver / "site-packages"


def ort_pin() -> str:
    """``onnxruntime==<the version this process runs>`` (the project's venv), so all servers share kernels."""
    import onnxruntime

    return f"onnxruntime=={onnxruntime.__version__}"


def peer_envs() -> dict[str, PeerEnv]:
    ort = ort_pin()
    return {
        # tritonserver 2.51 + the python backend stubs ship inside this wheel; the stub imports onnxruntime
        "pytriton": PeerEnv("pytriton", ("nvidia-pytriton==0.7.0", ort)),
        "mlserver": PeerEnv("mlserver", ("mlserver==1.7.1", "uvloop<0.22", ort)),
    }


def base_python() -> str:
    """The interpreter this venv was made from (a venv of a venv would chain site-packages oddly)."""
    return str(getattr(sys, "_base_executable", sys.executable))


def libpython_dir() -> str:
    """Folder holding ``libpython3.X.so`` of the base interpreter: the Triton python-backend stub links it."""
    return str(sysconfig.get_config_var("LIBDIR"))


def ensure(env: PeerEnv, cache: Path, log: Path) -> Path:
    """Create/refresh the venv when its stamp differs from ``env.requirements``; returns its python."""
    root, py = env.root(cache), env.python(cache)
    stamp = root / STAMP
    want = {"requirements": list(env.requirements), "base": base_python()}
    if py.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == want:
        return py
    cache.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        if not py.is_file():
            subprocess.run([base_python(), "-m", "venv", str(root)], check=True, stdout=out, stderr=out)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True, stdout=out, stderr=out)
        res = subprocess.run([str(py), "-m", "pip", "install", *env.requirements], stdout=out, stderr=out)
    if res.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(env.requirements)} into {root} failed; see {log}")
    stamp.write_text(json.dumps(want))
    return py
