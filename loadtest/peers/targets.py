"""How each server under test is laid out, started, waited for and stopped.

Every server gets free ports on 127.0.0.1, its own log file and its own process group (so stopping it also
stops tritonserver and the python-backend stubs it spawned). Readiness is ``GET /v2/models/mlp/ready`` == 200,
polled with a deadline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from loadtest.harness.procs import ROOT, free_port, http_ok, log_tail, spawn, stop
from loadtest.peers import model as m
from loadtest.peers import triton_ort as tort
from loadtest.peers.envs import PeerEnv, libpython_dir

SOURCES = tort.Sources()
"""Where the C++ backend's sources come from; ``python -m loadtest.peers`` sets it from its options."""

SERVICE_NAME = "shopinfer (python -m app)"


@dataclass
class Server:
    """A command that serves ``mlp`` over KServe v2 HTTP at ``url``."""

    name: str
    argv: list[str]
    url: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    proc: subprocess.Popen[bytes] | None = None

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{m.MODEL_NAME}/infer"

    def start(self, timeout_s: float = 300) -> None:
        env = {**os.environ, **self.env}
        env.pop("REDIS_URL", None)
        ready = f"{self.url}/v2/models/{m.MODEL_NAME}/ready"
        self.proc = spawn(self.argv, ready=lambda: http_ok(ready), what=f"{self.name} ready", log=self.log, env=env,
                          cwd=self.cwd, timeout_s=timeout_s, new_session=True)  # fmt: skip

    def check(self, body: bytes, expected: float) -> None:
        """One request before the benchmark: 200 and the model's own output, else the peer is not measured."""
        import json

        req = urllib.request.Request(self.infer_url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                answer = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{self.name} answered {e.code}: {e.read()[:500]!r}") from None
        got = float(answer["outputs"][0]["data"][0])
        if abs(got - expected) > 1e-5:
            raise RuntimeError(f"{self.name} returned {got}, onnxruntime here gives {expected}")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, 30, group=True)

    def log_tail(self, n: int = 3000) -> str:
        return log_tail(self.log, n)


def _ld_path(*dirs: str) -> str:
    return ":".join([*dirs, *filter(None, [os.environ.get("LD_LIBRARY_PATH", "")])])


def service(model: onnx.ModelProto, work: Path, extra_env: dict[str, str], label: str = "") -> Server:
    """This repository's ``python -m app`` (its defaults, 1 ORT thread), serving a published version.

    ``label`` names a variant (e.g. ``APP_WORKERS=1``) so several can run in one interleaved benchmark.
    """
    tag = "".join(c if c.isalnum() else "-" for c in label)
    repo = m.service_repo(model, work / f"service-repo{tag}")
    port = free_port()
    env = {"MODEL_REPO": str(repo), "APP_HOST": "127.0.0.1", "APP_PORT": str(port), "APP_LOG_LEVEL": "warning",
           "APP_ORT_INTRA_OP_THREADS": "1", "APP_ORT_INTER_OP_THREADS": "1", "APP_REQUIRED_MODELS": m.MODEL_NAME,
           "APP_GRPC_PORT": "0", **extra_env}  # gRPC (if this version serves it) on a free port  # fmt: skip
    name = f"{SERVICE_NAME}, {label}" if label else SERVICE_NAME
    return Server(name, [sys.executable, "-m", "app"], f"http://127.0.0.1:{port}", work / f"service{tag}.log", env)


def triton_dist(env: PeerEnv, cache: Path) -> Path:
    """tritonserver + backends from the PyTriton wheel, with the stub for this Python beside the backend.

    The wheel keeps one stub per Python version under ``python_backend_stubs/``; Triton looks for
    ``backends/python/triton_python_backend_stub``, so the matching one is copied there (as PyTriton does).
    """
    src = env.site_packages(cache) / "pytriton" / "tritonserver"
    dst = cache / "triton-dist"
    stub = dst / "backends" / "python" / "triton_python_backend_stub"
    if not stub.is_file():
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("python_backend_stubs"))
        shutil.copy2(src / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
                     / "triton_python_backend_stub", stub)  # fmt: skip
    return dst


def triton(model: onnx.ModelProto, work: Path, env: PeerEnv, cache: Path) -> Server:
    """Triton 2.51 (from the PyTriton wheel) + python backend whose ``model.py`` calls onnxruntime."""
    dist = triton_dist(env, cache)
    repo = m.triton_repo(model, work / "triton-repo")
    port = free_port()
    argv = [str(dist / "bin" / "tritonserver"), f"--model-repository={repo}",
            f"--backend-directory={dist / 'backends'}", "--http-address=127.0.0.1", f"--http-port={port}",
            "--allow-grpc=false", "--allow-metrics=false", "--log-verbose=0"]  # fmt: skip
    libs = str(env.site_packages(cache) / "nvidia_pytriton.libs")  # libtritonserver.so
    run_env = {
        "LD_LIBRARY_PATH": _ld_path(libs, libpython_dir()),  # the stub links libpython3.X.so
        # the stub's embedded python resolves "python3" on PATH and adopts that venv (onnxruntime, numpy<2)
        "PATH": f"{env.root(cache) / 'bin'}:{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(env.root(cache)),
    }
    return Server("Triton 2.51 + python backend", argv, f"http://127.0.0.1:{port}", work / "triton.log", run_env)


def triton_ort(model: onnx.ModelProto, work: Path, env: PeerEnv, cache: Path) -> Server:
    """Triton 2.51 + its C++ onnxruntime backend, built once from public sources (:mod:`.triton_ort`)."""
    import onnxruntime

    dist = triton_dist(env, cache)
    libs = env.site_packages(cache) / "nvidia_pytriton.libs"  # libtritonserver-<hash>.so
    backend = tort.build(cache, env.site_packages(cache), onnxruntime.__version__, SOURCES)
    backends = work / "triton-ort-backends"
    tort.install(backends, backend, libs)
    repo = m.triton_ort_repo(model, work / "triton-ort-repo")
    port = free_port()
    argv = [str(dist / "bin" / "tritonserver"), f"--model-repository={repo}",
            f"--backend-directory={backends / 'backends'}", "--http-address=127.0.0.1", f"--http-port={port}",
            "--allow-grpc=false", "--allow-metrics=false", "--log-verbose=0"]  # fmt: skip
    run_env = {"LD_LIBRARY_PATH": _ld_path(str(libs), str(backends / "backends" / "onnxruntime"))}
    return Server("Triton 2.51 + onnxruntime backend (C++)", argv, f"http://127.0.0.1:{port}",
                  work / "triton-ort.log", run_env)  # fmt: skip


def pytriton(model: onnx.ModelProto, work: Path, env: PeerEnv, cache: Path) -> Server:
    path = work / "pytriton-model.onnx"
    onnx.save(model, str(path))
    ports = [free_port() for _ in range(3)]
    argv = [str(env.python(cache)), str(Path(__file__).parent / "pytriton_serve.py"), str(path),
            "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
            "--max-batch", str(m.MAX_BATCH)]  # fmt: skip
    return Server("PyTriton 0.7.0", argv, f"http://127.0.0.1:{ports[0]}", work / "pytriton.log",
                  {"LD_LIBRARY_PATH": _ld_path(libpython_dir())}, cwd=work)  # fmt: skip


def mlserver(model: onnx.ModelProto, work: Path, env: PeerEnv, cache: Path) -> Server:
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    repo = m.mlserver_repo(model, work / "mlserver-repo", ports)
    argv = [str(env.root(cache) / "bin" / "mlserver"), "start", str(repo)]
    return Server("MLServer 1.7.1", argv, f"http://127.0.0.1:{ports['http']}", work / "mlserver.log",
                  {"PATH": f"{env.root(cache) / 'bin'}:{os.environ.get('PATH', '')}"}, cwd=repo)  # fmt: skip


Factory = Callable[[onnx.ModelProto, Path, PeerEnv, Path], Server]
PEERS: dict[str, tuple[str, Factory]] = {  # name -> (venv, factory)
    "triton-ort": ("pytriton", triton_ort),
    "triton": ("pytriton", triton),
    "pytriton": ("pytriton", pytriton),
    "mlserver": ("mlserver", mlserver),
}
