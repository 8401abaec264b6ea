"""``compress import`` of a TorchScript file and of a ``torch.export`` program: the pipeline exports them to ONNX
on the data's first rows, then imports, gates and publishes them like an ONNX file; inputs that do not match the
data, a fixed batch axis and a foreign zip archive are clear errors."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from app.repository import list_versions, read_manifest, sha256_file
from compress.cli import main
from compress.errors import ConfigError, DataError, ExportError
from compress.evaluate import session
from compress.imported.config import parse_import_config
from compress.imported.pipeline import run_import

F = 8


def _net(n_in: int = F) -> Any:
    """A small MLP trained for a few steps on a separable synthetic task (the gate compares to its FP32)."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = torch.nn.Linear(n_in, 256)
            self.out = torch.nn.Linear(256, 1)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.out(torch.relu(self.hidden(features)))).squeeze(-1)

    torch.manual_seed(0)
    net = Net()
    x, y = _rows(400, n_in)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy(net(xt), yt).backward()
        opt.step()
    return net.eval()


def _rows(n: int, n_in: int = F, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in)).astype(np.float32)
    return x, (x[:, :3].sum(axis=1) + rng.normal(size=n) > 0).astype(np.int64)


def _parquet(path: Path, n_in: int = F) -> Path:
    x, y = _rows(500, n_in, seed=1)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(n_in)])
    frame["y"] = y
    frame.to_parquet(path, index=False)
    return path


def _script(net: Any, path: Path) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.* is deprecated in favour of torch.export
        torch.jit.save(torch.jit.script(net), str(path))
    return path


def _export(net: Any, path: Path, dynamic: bool = True) -> Path:
    import torch

    shapes = {"features": {0: torch.export.Dim("batch")}} if dynamic else None
    torch.export.save(torch.export.export(net, (torch.zeros(4, F),), dynamic_shapes=shapes), str(path))
    return path


def _torch_scores(net: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.asarray(net(torch.from_numpy(np.array(x))).numpy())


def test_torchscript_file_by_the_one_liner_is_exported_gated_and_published(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = _net()
    program = _script(net, tmp_path / "net.pt")
    data = _parquet(tmp_path / "eval.parquet")
    repo = tmp_path / "repo"
    args = ["-q", "import", str(program), "--data", str(data), "--label", "y", "--metric", "auc", "--name", "ts"]
    rc = main([*args, "--repo", str(repo)])
    out, err = capsys.readouterr()
    assert rc == 0, f"compress import of a TorchScript file exited {rc}: {err}\n{out}"
    versions = list_versions(repo, "ts")
    assert versions[:1] == [1] and len(versions) in (1, 2), versions
    fp32 = read_manifest(repo / "ts" / "1")
    imported = fp32.recipe["imported"]
    assert imported["sha256"] == sha256_file(program) and imported["producer"] == "torchscript program", imported
    assert "dynamo=False" in str(imported["exported_by"]), imported
    assert [(t.name, t.shape) for t in fp32.inputs] == [("features", [-1, F])], fp32.inputs
    x = pd.read_parquet(data).drop(columns="y").to_numpy(np.float32)[:100]
    served = session(repo / "ts" / "1" / "model.onnx").run(["output"], {"features": x})[0].reshape(-1)
    np.testing.assert_allclose(served, _torch_scores(net, x), atol=1e-5, err_msg="exported FP32 vs the TorchScript")


def test_torch_export_program_with_npz_data_is_imported(tmp_path: Path) -> None:
    net = _net()
    program = _export(net, tmp_path / "net.pt2")
    x, y = _rows(500, seed=2)
    np.savez(tmp_path / "eval.npz", features=x, y=y)
    cfg = parse_import_config(
        {
            "model": {"name": "ep", "onnx": str(program)},
            "data": {"eval": str(tmp_path / "eval.npz"), "label": "y"},
            "gate": {"metric": "auc"},
            "candidates": ["fp16"],  # halves this small MLP; INT8 layers would add more scale tensors than they save
            "latency": {"batch_sizes": [1, 64], "repeats": 5},
        }
    )
    result = run_import(cfg, tmp_path / "repo", workdir=tmp_path / "work")
    assert result.source.lineage()["producer"] == "torch.export program", result.source.lineage()
    assert "dynamo=True" in str(result.source.lineage()["exported_by"]), result.source.lineage()
    fp32 = result.candidates[0]
    assert fp32.path is not None
    got = session(fp32.path).run(None, {"features": x[:100]})[0].reshape(-1)
    np.testing.assert_allclose(got, _torch_scores(net, x[:100]), atol=1e-5, err_msg="exported FP32 vs the program")
    assert result.published.get("fp32") == 1, result.published


def test_program_inputs_that_do_not_match_the_data_are_clear_errors(tmp_path: Path) -> None:
    net = _net()
    narrow = _parquet(tmp_path / "narrow.parquet", n_in=5)  # the net takes 8 features

    def cfg(model: Path, data: Path) -> Any:
        raw = {"model": {"name": "m", "onnx": str(model)}, "data": {"eval": str(data), "label": "y"}}
        return parse_import_config({**raw, "gate": {"metric": "auc"}})

    with pytest.raises(ExportError, match=r"inputs from the data \(features: float32 \['batch', 5\]\); do the"):
        run_import(cfg(_script(net, tmp_path / "net.pt"), narrow), tmp_path / "repo")
    with pytest.raises(DataError, match=r"program input 'features' expects shape \['batch', 8\], but narrow"):
        run_import(cfg(_export(net, tmp_path / "net.pt2"), narrow), tmp_path / "repo")
    np.savez(tmp_path / "other.npz", x=np.zeros((10, F), np.float32), y=np.zeros(10))
    with pytest.raises(DataError, match=r"no array for program input\(s\) \['features'\]"):
        run_import(cfg(tmp_path / "net.pt2", tmp_path / "other.npz"), tmp_path / "repo")
    with pytest.raises(ExportError, match=r"fixed batch size .*dynamic_shapes=\{'features'"):
        run_import(cfg(_export(net, tmp_path / "fixed.pt2", dynamic=False), narrow), tmp_path / "repo")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("a/readme.txt", "not a model")
    with pytest.raises(ConfigError, match="neither a TorchScript file"):
        run_import(cfg(tmp_path / "other.zip", narrow), tmp_path / "repo")
    assert not (tmp_path / "repo").exists(), "a refused import wrote to the repository"
