"""``compress run``: train FP32, build every candidate, gate, select, and publish FP32 + the winner."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.manifest import Artifact, AuxFile, Gate, Lineage, Manifest, Preprocessing, Robustness, Serving
from app.repository import list_versions
from compress.candidates import Builder, Candidate, parse_name
from compress.config import CompressConfig
from compress.engine import EngineResult, build_engine
from compress.errors import CompressError, GateFailed
from compress.gate import describe
from compress.progress import Stages
from compress.publish import file_info, publish
from compress.refusal import what_to_try
from compress.registry import get_task
from compress.robustness.measure import apply as apply_robustness
from compress.selection import Selection
from compress.selection import select as choose
from compress.tasks import TaskAdapter, task_drift_reference, task_extra_candidates, task_write_aux

log = logging.getLogger("compress")
REPORT_FILE = "report.json"


@dataclass
class RunResult:
    candidates: list[Candidate]
    baseline: dict[str, float]
    selected: Candidate | None
    selection: Selection | None = None
    published: dict[str, int] = field(default_factory=dict)  # candidate name -> version
    engine: dict[str, Any] = field(default_factory=dict)
    robustness: dict[str, Any] = field(default_factory=dict)

    def report(self, cfg: CompressConfig) -> dict[str, Any]:
        return {
            "model": cfg.model.name,
            "task": cfg.model.task,
            "created_at": datetime.now(UTC).isoformat(),
            "gate_rule": describe(cfg.gate.rules),
            "robustness": self.robustness,
            "baseline": self.baseline,
            "selected": self.selected.name if self.selected else None,
            "published": self.published,
            "tensorrt": self.engine,
            "select": cfg.select.model_dump(),
            "latency": cfg.latency.model_dump(),
            "selection": self.selection.as_dict() if self.selection else None,
            "candidates": [c.as_dict() for c in self.candidates],
        }


def code_version() -> str:
    """``git describe`` of the checkout when available, else the package version."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            return f"git:{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return "shopinfer-0.1.0"


def select(cands: list[Candidate], cfg: CompressConfig) -> Candidate | None:
    """The candidate ``compress.selection.select`` publishes under ``cfg.select`` (None if none qualifies)."""
    return choose(cands, cfg.select).chosen


def run(cfg: CompressConfig, repo: Path, *, workdir: Path | None = None, publish_versions: bool = True) -> RunResult:
    """The whole pipeline. Raises ``GateFailed`` (after writing the report) if no INT8 candidate passes."""
    import torch

    torch.set_num_threads(1)  # reproducible training; the data are small
    task = get_task(cfg)
    for name in cfg.candidates:  # fail on a typo before minutes of training, not after
        parse_name(name, list(task.torch_transforms()))
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="compress-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    stages = Stages(cfg.model.name)
    try:
        stages.say("reading data (%s)", "SYNTHETIC demo log" if _synthetic(cfg) else "task " + cfg.model.task)
        task.prepare()
        stages.say("non-neural baseline")
        baseline = task.baseline()
        stages.say("training the FP32 model")
        task.train_fp32()
        builder = Builder(cfg, task, work)
        names = ["fp32", *[n for n in cfg.candidates if n != "fp32"]]
        cands = [_build(builder, n) for n in stages.each(names, "candidate")]
        cands += task_extra_candidates(task, builder, cands[0])
        if cands[0].status != "reference":
            raise CompressError(f"the FP32 reference could not be built: {cands[0].error}")
        stages.say("robustness: decision flips under perturbed test rows")
        robustness = apply_robustness(cands, task, cfg)
        stages.say("timing %d candidates at batch sizes %s", len(cands), cfg.latency.batch_sizes)
        builder.measure_latency(cands)
        selection = choose(cands, cfg.select)
        result = RunResult(cands, baseline, selection.chosen, selection, robustness=robustness)
        (work / REPORT_FILE).write_text(json.dumps(result.report(cfg), indent=2))
        if result.selected is None:
            reasons = "; ".join(f"{n}: {r}" for n, r in selection.rejected.items())
            hints = what_to_try(cands, cfg.select, has_student="distilled" in task.torch_transforms())
            raise GateFailed(
                f"no candidate passed the gate within the budgets (min_compression="
                f"{cfg.select.min_compression:g}, max_latency_ratio={cfg.select.max_latency_ratio}): "
                f"{reasons}; nothing was published. "
                + ("What to try: " + "; ".join(f"({i}) {h}" for i, h in enumerate(hints, 1)) + ". " if hints else "")
                + f"Report: {work / REPORT_FILE}"
            )
        stages.say(
            "selected %s (%s objective; %d tied within noise)",
            result.selected.name,
            selection.rule["objective"],
            len(selection.tied),
        )
        if publish_versions:
            _publish_all(cfg, task, repo, result, work)
            stages.say(
                "published %s",
                ", ".join(f"{repo / cfg.model.name / str(v)} ({n})" for n, v in result.published.items()),
            )
        return result
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def _build(builder: Builder, name: str) -> Candidate:
    log.info("building candidate %s", name)
    try:
        return builder.build(name)
    except CompressError as e:
        if name == "fp32":
            raise
        log.warning("candidate %s failed: %s", name, e)
        return Candidate(name, status="error", error=str(e))


def _publish_all(cfg: CompressConfig, task: TaskAdapter, repo: Path, result: RunResult, work: Path) -> None:
    to_publish = [result.candidates[0]] if cfg.publish.baseline else []
    assert result.selected is not None
    to_publish.append(result.selected)
    if (
        cfg.engine.enabled
        and any(s in result.selected.name for s in ("int8_qdq", "int8_qat"))
        and result.selected.path is not None
    ):
        eng = build_engine(
            result.selected.path, work, max_batch=cfg.publish.max_batch_rows, workspace_mib=cfg.engine.workspace_mib
        )
    else:
        eng = EngineResult(
            "skipped", "the selected candidate is not a QDQ model" if cfg.engine.enabled else "disabled in [engine]"
        )
    result.engine = eng.as_dict()
    for cand in to_publish:
        engine = eng if cand is result.selected else None
        version = _publish_one(cfg, task, repo, cand, result, engine)
        result.published[cand.name] = version
        log.info("published %s as %s/%d", cand.name, cfg.model.name, version)


def publish_candidate(cfg: CompressConfig, repo: Path, result: RunResult, name: str) -> int:
    """Publish one more built candidate of ``result`` (e.g. an ANN retrieval row that was not selected)."""
    task = get_task(cfg)
    task.prepare()
    cand = next(c for c in result.candidates if c.name == name)
    return _publish_one(cfg, task, repo, cand, result, None)


def _publish_one(
    cfg: CompressConfig,
    task: TaskAdapter,
    repo: Path,
    cand: Candidate,
    result: RunResult,
    engine: EngineResult | None,
) -> int:
    assert cand.path is not None
    existing = list_versions(repo, cfg.model.name) if repo.is_dir() else []
    parent = existing[-1] if existing else None

    src = cand.path

    def stage(d: Path, version: int) -> Manifest:
        shutil.copyfile(src, d / "model.onnx")
        for path in cand.files.values():
            shutil.copyfile(path, d / path.name)
        artifacts = [Artifact(format="onnx", precision=cand.precision, **file_info(d, "model.onnx"))]
        if engine is not None and engine.status == "built" and engine.path is not None:
            shutil.copyfile(engine.path, d / engine.path.name)
            artifacts.append(
                Artifact(
                    format="tensorrt",
                    precision=cand.precision,
                    compute_capability=engine.compute_capability,
                    tensorrt_version=engine.tensorrt_version,
                    **file_info(d, engine.path.name),
                )
            )
        extra = task_write_aux(task, d, d / "model.onnx")  # before pre-processing: may calibrate its state
        pre = task.write_preprocessing(d)
        (d / REPORT_FILE).write_text(json.dumps(result.report(cfg), indent=2))
        aux = [
            AuxFile(role="preprocess", **file_info(d, pre["path"])),
            AuxFile(role="report", **file_info(d, REPORT_FILE)),
            *(AuxFile(role=role, **file_info(d, rel)) for role, rel in extra.items()),
            *(AuxFile(role=role, **file_info(d, path.name)) for role, path in cand.files.items()),
        ]
        gate = cand.gate
        drift = task_drift_reference(task, d / "model.onnx")
        return Manifest(
            name=cfg.model.name,
            version=version,
            task=cfg.model.task,
            created_at=datetime.now(UTC),
            inputs=cand.io[0] if cand.io else task.inputs,
            outputs=cand.io[1] if cand.io else task.outputs,
            artifacts=artifacts,
            aux_files=aux,
            preprocessing=Preprocessing(**pre),
            metrics={"candidate": cand.metrics, "fp32": result.candidates[0].metrics, "baseline": result.baseline},
            latency=cand.latency,
            gate=Gate(passed=True, rule=gate.rule, numbers=gate.numbers)
            if gate
            else Gate(passed=True, rule="reference (FP32 baseline, gated by definition)", numbers={}),
            recipe={
                "candidate": cand.name,
                **cand.recipe,
                "kept_fp32": cand.kept_fp32,
                "tensorrt": engine.as_dict() if engine else {"status": "skipped", "reason": "FP32 baseline"},
                "selection": result.selection.as_dict() if result.selection else None,
                "config": cfg.model_dump(mode="json"),
            },
            lineage=Lineage(parent_version=parent, code_version=code_version(), **_lineage(task, cfg)),
            serving=Serving(
                max_batch_rows=cfg.publish.max_batch_rows,
                max_queue_delay_us=cfg.publish.max_queue_delay_us,
                queue_cap_rows=cfg.publish.queue_cap_rows,
                warmup_batch_sizes=cfg.publish.warmup_batch_sizes,
            ),
            candidate=cand.name,
            drift=drift,
            robustness=Robustness(**cand.robustness) if cand.robustness else None,
        )

    version, _ = publish(repo, cfg.model.name, stage)
    return version


def _synthetic(cfg: CompressConfig) -> bool:
    return bool(getattr(cfg.data, "synthetic", False))


def _lineage(task: TaskAdapter, cfg: CompressConfig) -> dict[str, Any]:
    """Data files and split; ``split["synthetic"]`` is True only for generated data (the demo's fallback)."""
    lin = task.lineage()
    return {
        "data_files": lin["data_files"],
        "split": {**lin["split"], "training": lin.get("training", {}), "synthetic": _synthetic(cfg)},
    }
