"""Models we did not write: scikit-learn pipelines exported by ``skl2onnx``, imported with ``compress import``,
gated, published and served by the real server over KServe v2 (checked with ``tritonclient``).

Data: the Criteo sample's 13 dense columns (log1p, missing -> 0) and its click label; 7000 rows train the
scikit-learn models and calibrate, the other 3000 are the held-out rows both sklearn and compress score.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.manifest import Manifest
from app.repository import list_versions, read_manifest
from compress.cli import main
from compress.settings import compress_settings
from tests.fixtures.servers import ServerFactory, wait_until

FEATURES = [f"I{i}" for i in range(1, 14)]
AGREE = 1e-4  # sklearn (float64) vs ORT (float32) probabilities: AUC over 3000 rows agrees to ~1e-6; margin for ties


@dataclass
class Proof:
    root: Path
    train: Path
    eval: Path
    x_eval: np.ndarray
    y_eval: np.ndarray
    models: dict[str, Any]  # name -> fitted sklearn pipeline
    onnx: dict[str, Path]


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> Proof:
    import pandas as pd
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    src = compress_settings().data_dir / "ctr" / "criteo_kaggle_train_10k.txt"
    assert src.is_file(), f"the Criteo sample is missing at {src} (set DATA_DIR)"
    root = tmp_path_factory.mktemp("imported")
    raw = pd.read_csv(src, sep="\t", header=None, usecols=range(14))
    raw.columns = ["clicked", *FEATURES]
    frame = np.log1p(raw[FEATURES].clip(lower=0).fillna(0)).astype(np.float32)
    frame.insert(0, "clicked", raw["clicked"].astype(np.int64))
    train, held = frame.iloc[:7000], frame.iloc[7000:]
    paths = {"train": root / "train.parquet", "eval": root / "eval.parquet"}
    train.to_parquet(paths["train"], index=False)
    held.to_parquet(paths["eval"], index=False)
    x, y = train[FEATURES].to_numpy(), train["clicked"].to_numpy()
    estimators = {
        "mlp": MLPClassifier((128, 64), max_iter=15, random_state=0),
        "logreg": LogisticRegression(max_iter=300),
        "trees": GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0),
    }
    models, onnx_files = {}, {}
    for name, est in estimators.items():
        with warnings.catch_warnings():  # a 15-epoch MLP warns that it has not converged: bounded time on purpose
            warnings.simplefilter("ignore", ConvergenceWarning)
            models[name] = make_pipeline(StandardScaler(), est).fit(x, y)
        onx = to_onnx(models[name], x[:1], options={"zipmap": False}, target_opset=17)
        onnx_files[name] = root / f"{name}.onnx"
        onnx_files[name].write_bytes(onx.SerializeToString())
    return Proof(
        root, paths["train"], paths["eval"], held[FEATURES].to_numpy(), held["clicked"].to_numpy(), models, onnx_files
    )


def _import(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    rc = main(["-q", "import", *args])
    out, err = capsys.readouterr()
    assert rc == 0, f"compress import exited {rc}: {err}\n{out}"
    return out


def _report(repo: Path, name: str, version: int) -> dict[str, Any]:
    return dict(json.loads((repo / name / str(version) / "report.json").read_text()))


def _served_probabilities(server_url: str, model: str, version: int, x: np.ndarray, binary: bool = True) -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server_url.removeprefix("http://"))
    try:
        wait_until(lambda: client.is_model_ready(model, str(version)), 60, f"{model}/{version} ready")
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x.astype(np.float32), binary_data=binary)
        out = [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
        return np.asarray(client.infer(model, [inp], outputs=out, model_version=str(version)).as_numpy("probabilities"))
    finally:
        client.close()


def test_sklearn_mlp_is_imported_compressed_gated_published_and_served(
    proof: Proof, tmp_path: Path, start_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.metrics import roc_auc_score

    repo = tmp_path / "repo"
    args = [str(proof.onnx["mlp"]), "--data", str(proof.eval), "--calib", str(proof.train), "--label", "clicked"]
    out = _import([*args, "--metric", "auc", "--name", "ctr-sklearn-mlp", "--repo", str(repo)], capsys)
    versions = list_versions(repo, "ctr-sklearn-mlp")
    assert versions == [1, 2], f"expected FP32 and the selected candidate published, got {versions}\n{out}"
    fp32, best = (read_manifest(repo / "ctr-sklearn-mlp" / str(v)) for v in versions)
    sk_auc = float(roc_auc_score(proof.y_eval, proof.models["mlp"].predict_proba(proof.x_eval)[:, 1]))
    ours = fp32.metrics["fp32"]["auc"]
    assert abs(ours - sk_auc) < AGREE, f"FP32 AUC by compress {ours:.6f} vs by sklearn {sk_auc:.6f}"
    _assert_imported_manifest(fp32, proof.onnx["mlp"])
    _assert_imported_manifest(best, proof.onnx["mlp"])
    assert best.candidate.startswith(("int8", "fp16")) and best.gate.passed, f"selected {best.candidate}"
    assert best.gate.numbers["auc"] >= 0.999 * ours, f"gate numbers {best.gate.numbers}"
    report = _report(repo, "ctr-sklearn-mlp", 2)
    status = {c["name"]: c["status"] for c in report["candidates"]}
    assert status["pruned"] == "skipped" and {"int8_dynamic_s8", "int8_qdq", "int8_weights"} <= {
        n for n, s in status.items() if s in ("passed", "failed")
    }, f"candidate statuses {status}"
    assert best.artifact().bytes * 2 < fp32.artifact().bytes, (
        f"selected {best.candidate} is {best.artifact().bytes} bytes vs FP32 {fp32.artifact().bytes}"
    )

    server = start_server(repo, APP_DEFAULT_LATEST_VERSIONS="2")  # FP32 and the selected version side by side

    # every worker of the pod has loaded its versions (a per-model check asks only one worker)

    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 120, "the pod to be ready")
    want = proof.models["mlp"].predict_proba(proof.x_eval[:64])
    got_fp32 = _served_probabilities(server.url, "ctr-sklearn-mlp", 1, proof.x_eval[:64])
    np.testing.assert_allclose(got_fp32, want, atol=1e-5, err_msg="served FP32 version vs sklearn predict_proba")
    got_best = _served_probabilities(server.url, "ctr-sklearn-mlp", 2, proof.x_eval[:64])
    assert got_best.shape == want.shape and np.abs(got_best - want).max() < 0.05, (
        f"served {best.candidate} differs from sklearn by {np.abs(got_best - want).max():.4f}"
    )


def test_non_neural_graphs_pass_through_with_candidates_skipped_with_reasons(
    proof: Proof, tmp_path: Path, start_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.metrics import roc_auc_score

    repo = tmp_path / "repo"
    config = tmp_path / "trees.toml"
    config.write_text(
        f'[model]\nname = "ctr-sklearn-trees"\nonnx = "{proof.onnx["trees"]}"\n'
        f'[data]\neval = "{proof.eval}"\ncalib = "{proof.train}"\nlabel = "clicked"\n'
        '[gate]\nmetric = "auc"\n[latency]\nbatch_sizes = [1, 64]\nrepeats = 10\n'
    )
    _import(["--config", str(config), "--repo", str(repo)], capsys)
    _import(
        [str(proof.onnx["logreg"]), "--data", str(proof.eval), "--calib", str(proof.train), "--label", "clicked"]
        + ["--metric", "auc", "--name", "ctr-sklearn-logreg", "--repo", str(repo)],
        capsys,
    )
    for name, model in (("ctr-sklearn-trees", "trees"), ("ctr-sklearn-logreg", "logreg")):
        assert list_versions(repo, name) == [1], f"{name}: only the FP32 version applies"
        report = _report(repo, name, 1)
        skipped = {c["name"]: c["error"] for c in report["candidates"] if c["status"] == "skipped"}
        assert set(skipped) >= {"int8_dynamic_u8", "int8_qdq", "int8_weights", "pruned"}, f"{name}: {skipped}"
        assert "no MatMul/Gemm layer" in skipped["int8_qdq"], skipped["int8_qdq"]
        assert "training loop" in skipped["pruned"], skipped["pruned"]
        manifest = read_manifest(repo / name / "1")
        sk_auc = float(roc_auc_score(proof.y_eval, proof.models[model].predict_proba(proof.x_eval)[:, 1]))
        assert abs(manifest.metrics["fp32"]["auc"] - sk_auc) < AGREE, (
            f"{name}: compress {manifest.metrics['fp32']['auc']:.6f} vs sklearn {sk_auc:.6f}"
        )

    server = start_server(repo)

    # every worker of the pod has loaded its versions (a per-model check asks only one worker)

    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 120, "the pod to be ready")
    for name, model in (("ctr-sklearn-trees", "trees"), ("ctr-sklearn-logreg", "logreg")):
        want = proof.models[model].predict_proba(proof.x_eval[:100])
        got = _served_probabilities(server.url, name, 1, proof.x_eval[:100], binary=False)  # JSON tensors
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"served {name} (HTTP JSON) vs sklearn predict_proba")
        np.testing.assert_allclose(
            _served_grpc(server.grpc_target, name, proof.x_eval[:100]), want, atol=1e-5, err_msg=f"{name} over gRPC"
        )


def _served_grpc(target: str, model: str, x: np.ndarray) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(target)
    try:
        inp = grpcclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x.astype(np.float32))
        out = [grpcclient.InferRequestedOutput("probabilities")]
        return np.asarray(client.infer(model, [inp], outputs=out).as_numpy("probabilities"))
    finally:
        client.close()


def _assert_imported_manifest(m: Manifest, source: Path) -> None:
    from app.repository import sha256_file

    assert m.task == "generic" and m.preprocessing is None, f"{m.name}/{m.version}: task {m.task}"
    assert m.lineage.split["imported"] is True, m.lineage.split
    assert m.recipe["imported"]["sha256"] == sha256_file(source), m.recipe["imported"]
    assert m.recipe["imported"]["producer"].startswith("skl2onnx"), m.recipe["imported"]
