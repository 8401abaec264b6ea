"""A DeepFM we did not write: trained with ``deepctr-torch`` on the Criteo sample, exported with torch's ONNX
exporter, imported with its feature vocabularies by the one-liner, compressed, gated, published and served on
``/v1/ads/ctr`` from raw log fields and on ``/v2`` (``tritonclient``) from the model's tensor.

The model's one FP32 input ``[batch, 39]`` is deepctr-torch's own layout: the 26 categorical columns as
vocabulary indices (0 = unseen) and the 13 dense columns (log1p), in the order of ``model.feature_index``; the
vocabulary JSON (``shopinfer-ctr-vocab-1``) says exactly that, and the data files hold the raw rows.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.repository import list_versions, read_manifest, sha256_file
from compress.cli import main
from compress.settings import compress_settings
from tests.fixtures.servers import ServerFactory, wait_until

DENSE = [f"I{i}" for i in range(1, 14)]
SPARSE = [f"C{i}" for i in range(1, 27)]


@dataclass
class DeepFMProof:
    onnx: Path
    vocab: Path
    train: Path
    eval: Path
    raw_eval: list[dict[str, Any]]  # the held-out rows as the log has them: ints, hex strings, None
    columns: list[str]
    x_eval: np.ndarray
    y_eval: np.ndarray
    library_scores: np.ndarray  # deepctr-torch's own ``model.predict`` on the held-out rows


@pytest.fixture(scope="module")
def deepfm(tmp_path_factory: pytest.TempPathFactory) -> DeepFMProof:
    import pandas as pd
    import torch
    from deepctr_torch.inputs import DenseFeat, SparseFeat, get_feature_names
    from deepctr_torch.models import DeepFM

    src = compress_settings().data_dir / "ctr" / "criteo_kaggle_train_10k.txt"
    assert src.is_file(), f"the Criteo sample is missing at {src} (set DATA_DIR)"
    root = tmp_path_factory.mktemp("deepfm")
    raw = pd.read_csv(src, sep="\t", header=None, names=["clicked", *DENSE, *SPARSE])
    frame = pd.DataFrame({"clicked": raw["clicked"].astype(np.int64)})
    for c in DENSE:
        frame[c] = np.log1p(raw[c].clip(lower=0).fillna(0)).astype(np.float32)
    vocabs = {}
    for c in SPARSE:  # vocabulary from the training rows; 0 = unseen or missing
        vocabs[c] = {str(v): i + 1 for i, v in enumerate(raw[c].iloc[:7000].dropna().unique())}
        frame[c] = raw[c].map(vocabs[c]).fillna(0).astype(np.float32)
    feats = [SparseFeat(c, vocabulary_size=int(frame[c].max()) + 1, embedding_dim=8) for c in SPARSE]
    feats += [DenseFeat(c, 1) for c in DENSE]
    names = get_feature_names(feats)
    torch.manual_seed(0)
    model = DeepFM(feats, feats, task="binary", dnn_hidden_units=(256, 128), seed=0, device="cpu")
    model.compile("adam", "binary_crossentropy")
    train, held = frame.iloc[:7000], frame.iloc[7000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # deepctr-torch: non-writable numpy arrays
        model.fit(
            {n: train[n].to_numpy() for n in names}, train["clicked"].to_numpy(), batch_size=256, epochs=2, verbose=0
        )
    scores = model.predict({n: held[n].to_numpy() for n in names}, batch_size=1024).reshape(-1)
    columns = sorted(names, key=lambda n: model.feature_index[n][0])
    paths = {"train": root / "train.parquet", "eval": root / "eval.parquet", "onnx": root / "deepfm.onnx"}
    raw[:7000].to_parquet(paths["train"], index=False)  # raw rows: the vocabulary featurizes them
    raw[7000:].to_parquet(paths["eval"], index=False)
    doc = {
        "format": "shopinfer-ctr-vocab-1",
        "inputs": {"X": columns},
        "categorical": {c: {"index": vocabs[c], "missing": 0, "unseen": 0} for c in SPARSE},
        "dense": {c: {"fill": 0, "clip_min": 0, "log1p": True} for c in DENSE},
    }
    (root / "vocab.json").write_text(json.dumps(doc))
    raw_eval = [
        {k: (None if pd.isna(v) else int(v) if k in DENSE else v) for k, v in row.items() if k != "clicked"}
        for row in raw[7000:].to_dict("records")
    ]
    model.eval()
    example = torch.from_numpy(held[columns].to_numpy()[:8])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, as compress.onnx_tools uses
        torch.onnx.export(
            model,
            (example,),
            str(paths["onnx"]),
            input_names=["X"],
            output_names=["ctr"],
            dynamic_axes={"X": {0: "batch"}, "ctr": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return DeepFMProof(
        paths["onnx"],
        root / "vocab.json",
        paths["train"],
        paths["eval"],
        raw_eval,
        columns,
        held[columns].to_numpy(),
        held["clicked"].to_numpy(),
        scores,
    )


def test_deepctr_deepfm_is_imported_compressed_gated_published_and_served(
    deepfm: DeepFMProof, tmp_path: Path, start_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    import tritonclient.http as httpclient

    from compress.evaluate import session
    from compress.metrics import roc_auc

    repo = tmp_path / "repo"
    rc = main(
        ["-q", "import", str(deepfm.onnx), "--vocab", str(deepfm.vocab), "--data", str(deepfm.eval)]
        + ["--calib", str(deepfm.train), "--label", "clicked", "--metric", "auc", "--name", "ctr-deepfm"]
        + ["--repo", str(repo)]
    )
    out, err = capsys.readouterr()
    assert rc == 0, f"compress import exited {rc}: {err}\n{out}"
    assert list_versions(repo, "ctr-deepfm") == [1, 2], out
    fp32, best = (read_manifest(repo / "ctr-deepfm" / str(v)) for v in (1, 2))
    library_auc = roc_auc(deepfm.library_scores, deepfm.y_eval)
    assert abs(fp32.metrics["fp32"]["auc"] - library_auc) < 1e-4, (
        f"FP32 AUC by compress {fp32.metrics['fp32']['auc']:.6f} vs deepctr-torch's predict {library_auc:.6f}"
    )
    assert best.gate.passed and best.metrics["candidate"]["auc"] >= 0.999 * library_auc, best.gate.numbers
    assert best.recipe["imported"]["sha256"] == sha256_file(deepfm.onnx), best.recipe["imported"]
    for m in (fp32, best):  # a CTR version: the vocabularies are its state, the featurization is in the graph
        roles = {f.role for f in m.aux_files}
        assert m.task == "ctr" and {"preprocess", "raw_model"} <= roles, (m.task, roles)
        # robustness gated on perturbed raw fields (missing / unseen category, jittered numbers) via the vocabulary
        r = m.robustness
        assert r is not None and r.status in ("reference", "passed") and r.flip_rate is not None, r
        assert r.limit is not None and r.flip_rate <= r.limit, r
    report = json.loads((repo / "ctr-deepfm" / "2" / "report.json").read_text())
    assert report["robustness"]["set"]["kinds"] == ["cat_missing", "cat_unseen", "dense_jitter"], report["robustness"]
    rows: dict[str, Any] = {c["name"]: c for c in report["candidates"]}
    assert rows["fp16"]["status"] == "skipped" and "integer ids" in rows["fp16"]["error"], rows["fp16"]
    for name in ("int8_weights", "int8_dynamic_s8+int8_weights"):  # the embedding tables are most of the bytes
        assert rows[name]["status"] == "passed", rows[name]
        ratio = rows["fp32"]["bytes"] / rows[name]["bytes"]
        assert ratio >= 2.0, f"{name} is only {ratio:.2f}x smaller than FP32"
    fused = rows["fused_gathers"]  # 26 per-field lookups -> one: the same rows read, so the same scores
    assert fused["status"] == "passed" and fused["metrics"]["auc"] == rows["fp32"]["metrics"]["auc"], fused
    assert fused["recipe"]["fused_gathers"]["fields"] == 26, fused["recipe"]
    print(json.dumps({n: [c["status"], c["bytes"], c["latency_ms"], c["metrics"]] for n, c in rows.items()}))

    server = start_server(repo, APP_DEFAULT_LATEST_VERSIONS="2", APP_TASK_MODELS=json.dumps({"ctr": "ctr-deepfm"}))

    # every worker of the pod has loaded its versions (a per-model check asks only one worker)

    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 120, "the pod to be ready")
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        for version in ("1", "2"):
            wait_until(lambda v=version: client.is_model_ready("ctr-deepfm", v), 60, f"ctr-deepfm/{version} ready")  # type: ignore[misc]
        x = deepfm.x_eval[:64].astype(np.float32)
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        served = client.infer("ctr-deepfm", [inp], model_version="1").as_numpy("ctr").reshape(-1)
        np.testing.assert_allclose(
            served, deepfm.library_scores[:64], atol=1e-5, err_msg="served FP32 vs deepctr-torch"
        )
        compressed = client.infer("ctr-deepfm", [inp], model_version="2").as_numpy("ctr").reshape(-1)
        published = session(repo / "ctr-deepfm" / "2" / "model.onnx").run(["ctr"], {"X": x})[0].reshape(-1)
        np.testing.assert_allclose(compressed, published, atol=1e-4, err_msg=f"served {best.candidate} vs its file")
    finally:
        client.close()

    # /v1/ads/ctr: the storefront's raw fields (context + per-candidate overrides), featurized inside the graph
    logged = deepfm.raw_eval[:64]
    context = {c: logged[0][c] for c in ("C1", "I1")}
    # each candidate carries the fields that differ from the shared context (None overrides a context value)
    candidates = [
        {"ad_id": f"a{i}", "features": {k: v for k, v in r.items() if k not in context or v != context[k]}}
        for i, r in enumerate(logged)
    ]
    expected = {"1": deepfm.library_scores[:64], "2": compressed}
    for version, want in expected.items():
        body = {"context": context, "candidates": candidates, "model_version": int(version)}
        resp = server.post("/v1/ads/ctr", json=body)
        assert resp.status_code == 200, server.saw(resp)
        got = np.array([s["pctr"] for s in resp.json()["scores"]])
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"/v1/ads/ctr on ctr-deepfm/{version}")
    bad = server.post("/v1/ads/ctr", json={"candidates": [{"ad_id": "a", "features": {"I1": "many"}}]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_feature", server.saw(bad)
