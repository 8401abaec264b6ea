"""``compress evaluate``: recompute a published version's metrics from its own files and recorded config."""

from __future__ import annotations

from pathlib import Path

from app.manifest import Manifest
from app.repository import RepositoryError, load_verified, sha256_file
from compress.config import parse_config
from compress.errors import CompressError, DataError
from compress.evaluate import session
from compress.registry import get_task
from compress.tasks import task_predict


def evaluate_version(
    version_dir: Path, *, data: str | None = None, tolerance: float = 1e-6
) -> tuple[dict[str, tuple[float, float]], bool]:
    """Verify hashes, rebuild the held-out rows with the published pre-processing, rerun the ONNX artifact.

    Returns ``{metric: (manifest value, recomputed value)}`` and whether all agree within ``tolerance``.
    """
    version_dir = version_dir.resolve()
    if not version_dir.name.isdigit():
        raise CompressError(f"{version_dir} is not a version folder (<repo>/<model>/<integer>)")
    try:
        _, manifest = load_verified(version_dir.parent.parent, version_dir.parent.name, int(version_dir.name))
    except RepositoryError as e:
        raise CompressError(f"{version_dir}: {e}") from None
    cfg = parse_config(manifest.recipe["config"], f"{version_dir}/manifest.json recipe.config")
    if data:
        cfg.data.path = data
    _check_data(cfg.data.resolved_path(), manifest)
    task = get_task(cfg)
    task.prepare(version_dir)
    sess = session(version_dir / manifest.artifact("onnx").path, threads=2)
    got = task.metrics(task_predict(task, sess, task.eval_feeds("test"), manifest.outputs[0].name), "test")
    want = manifest.metrics["candidate"]
    rows = {k: (want[k], got[k]) for k in want if k in got}
    return rows, all(abs(w - g) <= tolerance for w, g in rows.values())


def _check_data(path: Path, manifest: Manifest) -> None:
    """The data must be what the version was evaluated on: one file, or the recorded files inside a folder."""
    for rec in manifest.lineage.data_files:
        p = path if path.is_file() else path / Path(rec.path).name
        if p.is_file() and sha256_file(p) != rec.sha256:
            raise DataError(f"{p} differs from the data this version was evaluated on (sha256 {rec.sha256[:12]}…)")
