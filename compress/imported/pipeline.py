"""``compress import``: gate, compress and publish an FP32 ONNX model trained elsewhere as a KServe v2 model.

The flow is the project's own (``compress.candidates.Builder``, ``compress.selection``, ``compress.publish``):
the FP32 graph as given is the reference, every candidate is gated against it on the held-out rows, the FP32
version and the selected candidate are published atomically. The version has no pre-processing block: it is a
raw model served on ``/v2`` (HTTP, gRPC) with dynamic batching. With feature vocabularies (``[model] vocab``) it
is a ``ctr`` version instead: the vocabularies are its pre-processing state and ``model_raw.onnx`` carries the
featurization, so ``/v1/ads/ctr`` serves it from raw fields (and ``/v2`` from the model's tensors). When no
candidate applies to the graph (a tree ensemble), only FP32 is published; when candidates applied and none
passed, nothing is.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from app.manifest import Artifact, AuxFile, DataFile, Gate, Lineage, Manifest, Preprocessing, Robustness, Serving
from app.repository import list_versions, sha256_file
from app.tasks.ctr.vocab import VocabFeaturizer
from compress.candidates import Candidate
from compress.config import resolve_path
from compress.errors import ConfigError, GateFailed
from compress.gate import describe
from compress.imported.candidates import ImportBuilder, ImportedTask, build_all, check_names
from compress.imported.config import ImportConfig
from compress.imported.data import Rows, load_rows, split
from compress.imported.program import export_program, program_kind
from compress.imported.source import Source, evaluated_output, load_source
from compress.imported.vocab import load_raw_rows, load_vocab, write_ctr_files
from compress.pipeline import REPORT_FILE, code_version
from compress.progress import Stages
from compress.publish import file_info, publish
from compress.robustness.measure import apply as apply_robustness
from compress.selection import Selection
from compress.selection import select as choose

TASK: Final = "generic"  # a raw model: the manifest names no pre-processing, the service serves it on /v2 only
CTR_TASK: Final = "ctr"  # a model imported with its feature vocabularies: /v1/ads/ctr and /v2


@dataclass
class ImportResult:
    source: Source
    candidates: list[Candidate]
    selection: Selection | None
    data: dict[str, Any]
    published: dict[str, int] = field(default_factory=dict)
    vocab: VocabFeaturizer | None = None
    held_records: list[dict[str, Any]] = field(default_factory=list)
    robustness: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return TASK if self.vocab is None else CTR_TASK

    @property
    def selected(self) -> Candidate | None:
        return self.selection.chosen if self.selection else None

    def report(self, cfg: ImportConfig) -> dict[str, Any]:
        """Same shape as ``compress run``'s report, so ``compress report`` and its plot read it too."""
        return {
            "model": cfg.model.name,
            "task": self.task,
            "imported": self.source.lineage(),
            "created_at": datetime.now(UTC).isoformat(),
            "gate_rule": describe(cfg.gate.rules),
            "robustness": self.robustness,
            "baseline": {},
            "selected": self.selected.name if self.selected else None,
            "published": self.published,
            "tensorrt": {"status": "skipped", "reason": "not built for imported models"},
            "select": cfg.select.model_dump(),
            "latency": cfg.latency.model_dump(),
            "selection": self.selection.as_dict() if self.selection else None,
            "data": self.data,
            "candidates": [c.as_dict() for c in self.candidates],
        }


def _rows(cfg: ImportConfig, source: Source, vocab: VocabFeaturizer | None) -> tuple[Rows, Rows, dict[str, Any]]:
    d = cfg.data

    def load_rows_of(path: Path) -> Rows:
        return load_rows(path, d, source.inputs) if vocab is None else load_raw_rows(path, d, vocab)

    eval_path = resolve_path(d.eval)
    rows = load_rows_of(eval_path)
    files = [{"path": str(eval_path.resolve()), "sha256": sha256_file(eval_path), "rows": len(rows)}]
    if d.calib:
        calib_path = resolve_path(d.calib)
        cal = load_rows_of(calib_path)
        files.append({"path": str(calib_path.resolve()), "sha256": sha256_file(calib_path), "rows": len(cal)})
        return cal, rows, {"files": files, "calibration": "file", "held_out_rows": len(rows)}
    cal, held, desc = split(rows, d.calibration_fraction, d.seed)
    return cal, held, {"files": files, "calibration": "seeded split of the eval file", **desc}


def _load_model(cfg: ImportConfig, work: Path, stages: Stages) -> Source:
    """The ONNX file as given, or a TorchScript / torch.export program exported to ONNX on the data's first rows."""
    path = cfg.model.resolved_path()
    kind = program_kind(path)
    if kind == "onnx":
        return load_source(path, work)
    if cfg.model.vocab:
        raise ConfigError(
            f"{path.name} is a {kind} program: a model imported with vocabularies must be given as ONNX "
            "(its inputs are the featurized tensors, which the raw data rows cannot provide as export examples)"
        )
    stages.say("exporting the %s program to ONNX", kind)
    exported = export_program(path, kind, cfg.data, resolve_path(cfg.data.eval), work)
    source = load_source(exported.onnx, work)
    return replace(
        source, path=exported.program, sha256=exported.sha256, producer=f"{kind} program", exporter=exported.exporter
    )


def run_import(
    cfg: ImportConfig, repo: Path, *, workdir: Path | None = None, publish_versions: bool = True
) -> ImportResult:
    """Import, build every candidate, gate, select and publish. Raises ``GateFailed`` when none passes."""
    check_names(cfg.candidates)
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="compress-import-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    stages = Stages(cfg.model.name)
    try:
        stages.say("reading %s", cfg.model.onnx)
        source = _load_model(cfg, work, stages)
        output = evaluated_output(source.outputs, cfg.model.output)
        vocab_path = cfg.model.vocab_path()
        vocab = load_vocab(vocab_path, source.inputs) if vocab_path else None
        cal, held, data = _rows(cfg, source, vocab)
        data["evaluated_output"] = output
        task = ImportedTask(cfg, source.inputs, source.outputs, output, held, cal, vocab)
        builder = ImportBuilder(cfg, task, work, source.graph)
        cands = build_all(builder, cfg.candidates, lambda n: stages.say("candidate %s", n))
        built = [c for c in cands if c.status != "skipped"]
        stages.say("robustness: decision flips under perturbed held-out rows")
        robustness = apply_robustness(built, task, cfg)  # type: ignore[arg-type]  # reads [robustness], [gate]
        stages.say("timing %d candidates at batch sizes %s", len(built), cfg.latency.batch_sizes)
        builder.measure_latency(built)
        selection = choose(built, cfg.select)
        for c in cands:
            if c.status == "skipped":
                selection.rejected[c.name] = f"skipped: {c.error}"
        result = ImportResult(
            source, cands, selection, data, vocab=vocab, held_records=held.records or [], robustness=robustness
        )
        (work / REPORT_FILE).write_text(json.dumps(result.report(cfg), indent=2))
        applied = [c for c in built if c.status != "reference"]
        if selection.chosen is None and applied:
            reasons = "; ".join(f"{n}: {r}" for n, r in selection.rejected.items())
            raise GateFailed(f"no candidate passed the gate: {reasons}; nothing was published")
        if publish_versions:
            to_publish = [cands[0]] if cfg.publish.baseline or selection.chosen is None else []
            if selection.chosen is not None:
                to_publish.append(selection.chosen)
            for cand in to_publish:
                result.published[cand.name] = _publish_one(cfg, repo, cand, result)
            stages.say("published %s", ", ".join(f"{cfg.model.name}/{v} ({n})" for n, v in result.published.items()))
        return result
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def _publish_one(cfg: ImportConfig, repo: Path, cand: Candidate, result: ImportResult) -> int:
    assert cand.path is not None
    src = cand.path
    existing = list_versions(repo, cfg.model.name) if repo.is_dir() else []
    ref = result.candidates[0]

    def stage(d: Path, version: int) -> Manifest:
        shutil.copyfile(src, d / "model.onnx")
        (d / REPORT_FILE).write_text(json.dumps(result.report(cfg), indent=2))
        aux = [AuxFile(role="report", **file_info(d, REPORT_FILE))]
        pre = None
        if result.vocab is not None:  # featurization in the graph, checked against the model on held-out rows
            state, extra = write_ctr_files(d, result.vocab, d / "model.onnx", result.held_records)
            pre = Preprocessing(**state)
            aux += [AuxFile(role="preprocess", **file_info(d, state["path"]))]
            aux += [AuxFile(role=role, **file_info(d, rel)) for role, rel in extra.items()]
        gate = cand.gate
        return Manifest(
            name=cfg.model.name,
            version=version,
            task=result.task,
            created_at=datetime.now(UTC),
            inputs=result.source.inputs,
            outputs=result.source.outputs,
            artifacts=[Artifact(format="onnx", precision=cand.precision, **file_info(d, "model.onnx"))],
            aux_files=aux,
            preprocessing=pre,
            metrics={"candidate": cand.metrics, "fp32": ref.metrics},
            latency=cand.latency,
            gate=Gate(passed=True, rule=gate.rule, numbers=gate.numbers)
            if gate
            else Gate(passed=True, rule="reference (the imported FP32 model, gated by definition)", numbers={}),
            recipe={
                "candidate": cand.name,
                **cand.recipe,
                "kept_fp32": cand.kept_fp32,
                "imported": result.source.lineage(),
                "selection": result.selection.as_dict() if result.selection else None,
                "config": cfg.model_dump(mode="json"),
            },
            lineage=Lineage(
                parent_version=existing[-1] if existing else None,
                code_version=code_version(),
                data_files=[DataFile(**f) for f in result.data["files"]],
                split={
                    "imported": True,
                    "source_model": result.source.lineage(),
                    **{k: v for k, v in result.data.items() if k != "files"},
                },
            ),
            serving=Serving(**cfg.publish.model_dump(exclude={"baseline"})),  # [publish] batching defaults
            candidate=cand.name,
            robustness=Robustness(**cand.robustness) if cand.robustness else None,
        )

    version, _ = publish(repo, cfg.model.name, stage)
    return version
