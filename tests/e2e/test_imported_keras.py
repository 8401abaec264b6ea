"""A Keras model we did not write the trainer of: trained with ``tensorflow-cpu`` on the Criteo sample, converted
with ``tf2onnx``, imported by the one-liner (NPZ data: two inputs, FP32 dense counts and INT64 hashed ids),
compressed, gated, published and served on ``/v2`` (``tritonclient`` HTTP and gRPC).

TensorFlow trains and converts in its own process (``tests/e2e/keras_proof.py`` says why); this test reads the
files it writes: the ONNX file, the data, and Keras's own ``model.predict`` on the held-out rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.repository import list_versions, read_manifest, sha256_file
from compress.cli import main
from compress.settings import compress_settings
from tests.fixtures.servers import ServerFactory, wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class KerasProof:
    onnx: Path
    train: Path
    eval: Path
    feeds: dict[str, np.ndarray]  # the held-out inputs: dense FP32 [N, 13], ids INT64 [N, 26]
    y_eval: np.ndarray
    library_scores: np.ndarray  # Keras's own ``model.predict`` on the held-out rows


@pytest.fixture(scope="module")
def keras_proof(tmp_path_factory: pytest.TempPathFactory) -> KerasProof:
    src = compress_settings().data_dir / "ctr" / "criteo_kaggle_train_10k.txt"
    assert src.is_file(), f"the Criteo sample is missing at {src} (set DATA_DIR)"
    root = tmp_path_factory.mktemp("keras")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.e2e.keras_proof", str(src), str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, (
        f"Keras training / tf2onnx conversion failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    )
    with np.load(root / "eval.npz") as z:
        feeds, y = {k: z[k] for k in ("dense", "ids")}, z["clicked"]
    return KerasProof(
        root / "keras.onnx", root / "train.npz", root / "eval.npz", feeds, y, np.load(root / "keras_scores.npy")
    )


def test_keras_model_via_tf2onnx_is_imported_compressed_gated_published_and_served(
    keras_proof: KerasProof, tmp_path: Path, start_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from compress.evaluate import session
    from compress.metrics import roc_auc

    repo = tmp_path / "repo"
    rc = main(
        ["-q", "import", str(keras_proof.onnx), "--data", str(keras_proof.eval), "--calib", str(keras_proof.train)]
        + ["--label", "clicked", "--metric", "auc", "--name", "ctr-keras", "--repo", str(repo)]
    )
    out, err = capsys.readouterr()
    assert rc == 0, f"compress import exited {rc}: {err}\n{out}"
    assert list_versions(repo, "ctr-keras") == [1, 2], out
    fp32, best = (read_manifest(repo / "ctr-keras" / str(v)) for v in (1, 2))
    library_auc = roc_auc(keras_proof.library_scores, keras_proof.y_eval)
    assert abs(fp32.metrics["fp32"]["auc"] - library_auc) < 1e-4, (
        f"FP32 AUC by compress {fp32.metrics['fp32']['auc']:.6f} vs Keras's predict {library_auc:.6f}"
    )
    assert best.gate.passed and best.metrics["candidate"]["auc"] >= 0.999 * library_auc, best.gate.numbers
    imported = best.recipe["imported"]
    assert imported["sha256"] == sha256_file(keras_proof.onnx) and imported["producer"].startswith("tf2onnx"), imported
    assert best.task == "generic" and best.preprocessing is None, best.task
    assert [(t.name, t.dtype) for t in fp32.inputs] == [("dense", "FP32"), ("ids", "INT64")], fp32.inputs
    report = json.loads((repo / "ctr-keras" / "2" / "report.json").read_text())
    rows: dict[str, Any] = {c["name"]: c for c in report["candidates"]}
    assert rows["pruned"]["status"] == "skipped" and "training loop" in rows["pruned"]["error"], rows["pruned"]
    ratio = rows["fp32"]["bytes"] / rows[best.candidate or ""]["bytes"]
    assert ratio >= 2.0, f"the selected {best.candidate} is only {ratio:.2f}x smaller than FP32 (the table is INT8)"
    print(json.dumps({n: [c["status"], c["bytes"], c["latency_ms"], c["metrics"]] for n, c in rows.items()}))

    server = start_server(repo, APP_DEFAULT_LATEST_VERSIONS="2")  # FP32 and the selected version side by side
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 120, "the pod to be ready")
    n = 64
    feeds = {k: v[:n] for k, v in keras_proof.feeds.items()}
    published = session(repo / "ctr-keras" / "2" / "model.onnx").run(["ctr"], feeds)[0].reshape(-1)
    expected = {"1": keras_proof.library_scores[:n], "2": published}
    for version, want in expected.items():
        got_http = _served_http(server.url, version, feeds)
        np.testing.assert_allclose(got_http, want, atol=1e-5, err_msg=f"ctr-keras/{version} over HTTP")
        got_grpc = _served_grpc(server.grpc_target, version, feeds)
        np.testing.assert_allclose(got_grpc, want, atol=1e-5, err_msg=f"ctr-keras/{version} over gRPC")


def _served_http(url: str, version: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    try:
        wait_until(lambda: client.is_model_ready("ctr-keras", version), 60, f"ctr-keras/{version} ready")
        inputs = []
        for name, dtype in (("dense", "FP32"), ("ids", "INT64")):
            inp = httpclient.InferInput(name, list(feeds[name].shape), dtype)
            inp.set_data_from_numpy(feeds[name], binary_data=True)
            inputs.append(inp)
        return np.asarray(client.infer("ctr-keras", inputs, model_version=version).as_numpy("ctr")).reshape(-1)
    finally:
        client.close()


def _served_grpc(target: str, version: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(target)
    try:
        inputs = []
        for name, dtype in (("dense", "FP32"), ("ids", "INT64")):
            inp = grpcclient.InferInput(name, list(feeds[name].shape), dtype)
            inp.set_data_from_numpy(feeds[name])
            inputs.append(inp)
        return np.asarray(client.infer("ctr-keras", inputs, model_version=version).as_numpy("ctr")).reshape(-1)
    finally:
        client.close()
