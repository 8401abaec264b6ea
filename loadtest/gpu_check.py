"""The first thing to run on a lent GPU machine: TensorRT engines of every model, gated, served, and timed.

``python -m loadtest.gpu_check [--dry-run] [--repo model_repo] [--work .gpucheck] [--json PATH]``

For every model in the repository it takes the Q/DQ INT8 ONNX (a published ``int8-qdq`` version, else
``<work>/qdq/<model>.onnx``, else quantizes the FP32 version with the task's own calibration rows), builds a
TensorRT engine with :func:`compress.engine.build_engine` (keyed by compute capability and TensorRT version),
gates the engine's outputs against FP32 on the same held-out rows (the task's own metrics and gate rules, as
``compress evaluate`` rebuilds them), publishes one model as a version carrying the plan, serves it through
``python -m app`` (the artifact chosen by :mod:`app.runtime.select`) with real KServe v2 requests, and times
the engine against ONNX Runtime CUDA and CPU on the same batches. It ends with one table and, with ``--json``
or ``$OUT`` set, a JSON file of everything measured.

``--dry-run`` runs the same flow on a machine without a GPU: every step that needs none runs for real
(imports, repository scan, quantization, gate, manifest, serving on ORT CPU), the engine build reports why it
was skipped, and the runtime choice is checked against a simulated host that matches a placeholder plan.
The whole run has a time budget (``--budget-s``, 540 s by default) split per step, and prints progress at
least every 20 s. docs/benchmarks.md, "GPU check", says how to run it with the device tool.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtest.gpu_budget import Budget, Skip

if TYPE_CHECKING:  # the service's modules need pydantic, which the device image lacks until the install step
    import numpy as np

    from app.manifest import Manifest

# Project dependencies the device image lacks (its package list: /work/.library/device/KINDS.md); carried as
# wheels, see docs/benchmarks.md "GPU check". TensorRT and onnxruntime-gpu are far above the 64 MiB carry limit.
CARRY_WHEELS = (
    "pydantic", "pydantic-core", "pydantic-settings", "python-dotenv", "typing-inspection", "annotated-types",
    "fastapi", "starlette", "fastapi-offline", "uvicorn", "orjson", "redis", "grpcio-health-checking",
    "grpcio-reflection", "grpcio-status",
)  # fmt: skip
STEP_BUDGETS = {"probe": 20, "install": 40, "quantize": 120, "engines": 150, "gate": 90, "stage-data": 20, "serve": 90,
                "compare": 60}  # fmt: skip
DRY_PLAN_TRT = "0.0-dry-run"  # TensorRT version of the placeholder plan: matches no real host


@dataclass
class ModelPlan:
    """One model of the repository and what the check found or made for it."""

    name: str
    fp32_dir: Path
    qdq: Path | None = None
    qdq_source: str = ""
    engine: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    task: Any = None
    cfg: Any = None

    @property
    def manifest(self) -> Manifest:
        from app.repository import read_manifest

        return read_manifest(self.fp32_dir)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "fp32_version": str(self.fp32_dir),
            "qdq": str(self.qdq) if self.qdq else None,
            "qdq_source": self.qdq_source,
            "engine": self.engine,
            "gate": self.gate,
        }


def find_models(repo: Path, work: Path) -> list[ModelPlan]:
    """Each model with an FP32 version (the gate's reference), and its Q/DQ ONNX where one already exists."""
    from app.repository import list_versions, read_manifest

    plans = []
    for d in sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        fp32 = qdq = None
        for v in list_versions(repo, d.name):
            m = read_manifest(d / str(v))
            onnx = next((a for a in m.artifacts if a.format == "onnx"), None)
            if onnx is None:
                continue
            if onnx.precision == "fp32":
                fp32 = d / str(v)
            elif "qdq" in onnx.precision:
                qdq = d / str(v) / onnx.path
        if fp32 is None:
            continue
        plan = ModelPlan(d.name, fp32)
        carried = work / "qdq" / f"{d.name}.onnx"
        if qdq is not None:
            plan.qdq, plan.qdq_source = qdq, "published int8-qdq version"
        elif carried.is_file():
            plan.qdq, plan.qdq_source = carried, "prepared in the work folder"
        plans.append(plan)
    return plans


def load_task(plan: ModelPlan) -> None:
    """The task adapter of the FP32 version, prepared from its published state (as ``compress evaluate`` does)."""
    from compress.config import parse_config
    from compress.registry import get_task

    if plan.task is not None:
        return
    manifest = plan.manifest
    if "config" not in manifest.recipe:
        raise Skip(f"{plan.fp32_dir}: the manifest records no compress config, so its held-out rows can't be rebuilt")
    cfg = parse_config(manifest.recipe["config"], f"{plan.fp32_dir}/manifest.json recipe.config")
    task = get_task(cfg)
    task.prepare(plan.fp32_dir)
    plan.cfg, plan.task = cfg, task


def stage_data(plans: list[ModelPlan], work: Path) -> str:
    """Copy each model's data (file or folder) to ``<work>/data`` under its path below DATA_DIR, so a machine
    that reaches nothing outside the carried tree can rebuild the held-out rows (``main`` points DATA_DIR there
    when it is unset)."""
    from compress.config import parse_config
    from compress.settings import compress_settings

    root = Path(compress_settings().data_dir).resolve()
    copied = []
    for plan in plans:
        recipe = plan.manifest.recipe
        if "config" not in recipe:
            continue
        src = parse_config(recipe["config"], "recipe.config").data.resolved_path().resolve()
        if not src.is_relative_to(root) or src == root:
            raise RuntimeError(f"{plan.name}: data {src} is not below DATA_DIR {root}; carry it by hand")
        dst = work / "data" / src.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, dst)
        copied.append(str(src.relative_to(root)))
    return "copied " + ", ".join(copied)


def carry_sizes(*paths: Path) -> dict[str, float]:
    """MiB of each path to carry to the device (its limit is 64 MiB for the tree and carried paths together)."""
    out = {}
    for p in paths:
        files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else []
        out[str(p)] = round(sum(f.stat().st_size for f in files) / 2**20, 2)
    return out


def quantize(plan: ModelPlan, work: Path) -> None:
    from compress.quantize import quantize_qdq_int8

    load_task(plan)
    out = work / "qdq" / f"{plan.name}.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    q = plan.cfg.quantize
    src = work / "qdq" / f"{plan.name}.fp32-matmul.onnx"
    unfuse_gemm(plan.fp32_dir / plan.manifest.artifact("onnx").path, src)
    quantize_qdq_int8(src, out, plan.task.calibration(), per_channel=q.per_channel, method=q.calibrate_method)
    src.unlink()  # the unfused copy is as large as the FP32 model and is not carried
    import onnx

    if not any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node):
        raise RuntimeError(f"{plan.name}: quantizing {src.name} left no QuantizeLinear node (no MatMul in the graph?)")
    plan.qdq, plan.qdq_source = out, "quantized from FP32 by this check"


def unfuse_gemm(src: Path, dst: Path) -> int:
    """Rewrite ``Gemm(A, B, C)`` (alpha = beta = 1, A not transposed) as ``MatMul`` + ``Add``; returns how many.

    A published FP32 graph is already optimized (MatMul + Add fused into Gemm), while the pipeline's Q/DQ step
    quantizes MatMul nodes of the unoptimized export: unfused, the same quantizer sees the same layers.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes, count = [], 0
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if n.op_type != "Gemm" or not plain or n.input[1] not in inits:
            nodes.append(n)
            continue
        w = n.input[1]
        if attrs.get("transB", 0):
            t = numpy_helper.from_array(numpy_helper.to_array(inits[w]).T.copy(), f"{w}_t")
            g.initializer.append(t)
            w = t.name
        mm = n.output[0] + "_matmul" if len(n.input) > 2 and n.input[2] else n.output[0]
        nodes.append(helper.make_node("MatMul", [n.input[0], w], [mm], name=f"{n.name}_matmul"))
        if mm != n.output[0]:
            nodes.append(helper.make_node("Add", [mm, n.input[2]], [n.output[0]], name=f"{n.name}_add"))
        count += 1
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(model, str(dst))
    return count


class PlanSession:
    """A TensorRT plan behind the ``run(names, feeds)`` call of an ORT session, so the task's own predict and
    the latency table drive it unchanged (through the service's :class:`app.runtime.tensorrt.TensorRTRuntime`)."""

    def __init__(self, plan_path: Path, manifest: Manifest) -> None:
        from app.manifest import Artifact
        from app.runtime.select import RuntimeChoice, detect_host
        from app.runtime.tensorrt import TensorRTRuntime

        artifact = Artifact(
            path=plan_path.name, format="tensorrt", precision="int8-qdq", sha256="0" * 64, bytes=plan_path.stat().st_size,
            compute_capability=detect_host().compute_capability or "?", tensorrt_version=detect_host().tensorrt_version or "?",
        )  # fmt: skip
        self.runtime = TensorRTRuntime(RuntimeChoice(artifact, "tensorrt", (), "gpu check"))
        self.runtime.load(plan_path.parent, manifest)
        self.outputs = [o.name for o in manifest.outputs]

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self.runtime.infer(feeds)
        return [out[n] for n in (names or self.outputs)]


def gate_one(plan: ModelPlan) -> None:
    """Task metrics of the engine (dry run: the Q/DQ ONNX on ORT CPU) against FP32 on the same held-out rows."""
    from compress.evaluate import session
    from compress.gate import check
    from compress.tasks import task_predict

    load_task(plan)
    manifest, task = plan.manifest, plan.task
    feeds, output = task.eval_feeds("test"), manifest.outputs[0].name
    fp32 = task.metrics(
        task_predict(task, session(plan.fp32_dir / manifest.artifact("onnx").path, 2), feeds, output), "test"
    )
    if plan.engine.get("status") == "built":
        cand_sess: Any = PlanSession(Path(plan.engine["file"]), manifest)
        runs_on = "tensorrt"
    elif plan.qdq is not None:  # no engine (dry run, or no TensorRT here): the Q/DQ graph on ORT stands in
        cand_sess, runs_on = session(plan.qdq, 2), f"onnxruntime-cpu q/dq (no engine: {plan.engine.get('reason')})"
    else:
        raise Skip("neither an engine nor a q/dq onnx")
    cand = task.metrics(task_predict(task, cand_sess, feeds, output), "test")
    res = check(cand, fp32, plan.cfg.gate.rules)
    plan.gate = {
        "runs_on": runs_on,
        "rows": int(len(next(iter(feeds.values())))),
        "passed": res.passed,
        "rule": res.rule,
        "reason": res.reason,
        "fp32": fp32,
        "candidate": cand,
        "retention": {k: cand[k] / fp32[k] for k in fp32 if k in cand and fp32[k]},
    }


def served_version(plan: ModelPlan, serve_repo: Path, dry_run: bool) -> tuple[Path, Manifest]:
    """Publish the Q/DQ ONNX plus the plan as one version of ``serve_repo`` (aux files copied from FP32).

    In a dry run the plan is a placeholder keyed to a TensorRT version no host has, so the manifest is complete
    and valid but the service must choose ONNX Runtime for it."""
    from app.manifest import Artifact
    from app.repository import read_manifest
    from compress.publish import file_info, publish

    assert plan.qdq is not None
    src = plan.manifest
    eng = plan.engine

    def stage(d: Path, version: int) -> Manifest:
        for aux in src.aux_files:
            (d / aux.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plan.fp32_dir / aux.path, d / aux.path)
        shutil.copyfile(plan.qdq, d / "model.onnx")  # type: ignore[arg-type]
        if eng.get("status") == "built":
            plan_file = Path(eng["file"])
            cc, trt = eng["compute_capability"], eng["tensorrt_version"]
        else:
            plan_file = d / f"model.sm90.trt{DRY_PLAN_TRT}.plan"
            plan_file.write_bytes(b"placeholder: no TensorRT on this host")
            cc, trt = "9.0", DRY_PLAN_TRT
        if plan_file.parent != d:
            shutil.copyfile(plan_file, d / plan_file.name)
        artifacts = [
            Artifact(format="onnx", precision="int8-qdq", **file_info(d, "model.onnx")),
            Artifact(format="tensorrt", precision="int8-qdq", compute_capability=cc, tensorrt_version=trt,
                     **file_info(d, plan_file.name)),
        ]  # fmt: skip
        return src.model_copy(update={"version": version, "artifacts": artifacts, "candidate": "int8_qdq"})

    version, path = publish(serve_repo, plan.name, stage)
    return path, read_manifest(path)


def check_selection(manifest: Manifest, dry_run: bool) -> dict[str, Any]:
    """The runtime choice for this host, for a host matching the plan exactly, and for one with another
    TensorRT version: only the exact match may pick the plan."""
    from app.runtime.select import HostCapabilities, choose_runtime, detect_host

    plan = next(a for a in manifest.artifacts if a.format == "tensorrt")
    match = HostCapabilities(
        ("CUDAExecutionProvider", "CPUExecutionProvider"), plan.compute_capability, plan.tensorrt_version
    )
    other = HostCapabilities(match.ort_providers, plan.compute_capability, f"{plan.tensorrt_version}.other")
    host = detect_host()
    here, exact, off = choose_runtime(manifest, host), choose_runtime(manifest, match), choose_runtime(manifest, other)
    if exact.engine != "tensorrt" or off.engine != "onnxruntime" or off.providers[0] != "CUDAExecutionProvider":
        raise AssertionError(f"selection is wrong: exact match -> {exact.reason}; other TensorRT -> {off.reason}")
    if dry_run and here.engine != "onnxruntime":
        raise AssertionError(f"a host without the plan's TensorRT chose it: {here.reason}")
    return {"host": host.__dict__, "here": here.reason, "here_platform": here.platform, "exact_match": exact.reason,
            "other_tensorrt": off.reason}  # fmt: skip


def v2_body(manifest: Manifest, feeds: dict[str, np.ndarray], rows: int) -> bytes:
    from app.protocol import datatype_of

    inputs = []
    for spec in manifest.inputs:
        arr = feeds[spec.name][:rows]
        inputs.append({"name": spec.name, "shape": list(arr.shape), "datatype": datatype_of(arr),
                       "data": arr.reshape(-1).tolist()})  # fmt: skip
    return json.dumps({"inputs": inputs}).encode()


def load_http(url: str, body: bytes, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads posting ``body`` for ``seconds``; requests/s, p50/p99 ms and non-200 answers."""
    import httpx

    lat: list[float] = []
    errors = [0]
    end = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=10) as c:
            while time.monotonic() < end:
                t = time.perf_counter()
                r = c.post(url, content=body, headers={"content-type": "application/json"})
                dt = time.perf_counter() - t
                if r.status_code == 200:
                    lat.append(dt)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3 if lat else float("nan")

    return {"rps": len(lat) / (time.monotonic() - t0), "p50_ms": q(0.5), "p99_ms": q(0.99), "errors": errors[0]}


def serve(plan: ModelPlan, work: Path, budget: Budget, dry_run: bool) -> dict[str, Any]:
    """Serve the plan's version through ``python -m app`` and send it real KServe v2 requests."""
    import httpx

    from loadtest.bench_ctr import server

    serve_repo = work / "serve_repo"
    shutil.rmtree(serve_repo, ignore_errors=True)
    version_dir, manifest = served_version(plan, serve_repo, dry_run)
    selection = check_selection(manifest, dry_run)
    load_task(plan)
    feeds = plan.task.eval_feeds("test")
    # CTR in graph mode runs model_raw.onnx on the CPU beside the runtime: python mode sends the batch to the plan
    env = {
        "APP_MODEL_REPO": str(serve_repo),
        "APP_CTR_FEATURIZE": "python",
        "APP_LOG_LEVEL": "warning",
        "APP_GRPC_PORT": "0",
    }
    out: dict[str, Any] = {"model": plan.name, "version_dir": str(version_dir), "selection": selection}
    with server(["-m", "app"], env, work / "serve.log") as (url, _pid):
        meta = httpx.get(f"{url}/v2/models/{plan.name}", timeout=10).json()
        out["platform"] = meta.get("platform")
        want = selection["here_platform"]
        if out["platform"] != want:
            raise AssertionError(f"the service reports platform {out['platform']!r}, the selection chose {want!r}")
        seconds = max(1.0, min(8.0, budget.step_left() / 4))
        for rows in (1, 64):
            body = v2_body(manifest, feeds, rows)
            out[f"rows_{rows}"] = load_http(f"{url}/v2/models/{plan.name}/infer", body, 8, seconds)
            budget.say(f"serve {plan.name}, {rows} rows/request: {out[f'rows_{rows}']}")
    return out


def compare(plan: ModelPlan, seconds_left: float) -> dict[str, Any]:
    """Median ms per ``run`` of the plan, ORT CUDA and ORT CPU on the same held-out batches (interleaved)."""
    import onnxruntime as ort

    from compress.evaluate import latency_stats, tile_rows

    load_task(plan)
    manifest = plan.manifest
    feeds = plan.task.eval_feeds("test")
    batches = {b: tile_rows(feeds, b) for b in (1, 64, manifest.serving.max_batch_rows)}
    sessions: dict[str, Any] = {}
    fp32 = plan.fp32_dir / manifest.artifact("onnx").path
    assert plan.qdq is not None
    for label, path, providers in (
        ("ort-cpu fp32", fp32, ["CPUExecutionProvider"]),
        ("ort-cpu q/dq", plan.qdq, ["CPUExecutionProvider"]),
        ("ort-cuda fp32", fp32, ["CUDAExecutionProvider"]),
        ("ort-cuda q/dq", plan.qdq, ["CUDAExecutionProvider"]),
    ):
        if providers[0] in ort.get_available_providers():
            sessions[label] = ort.InferenceSession(str(path), providers=providers)
    if plan.engine.get("status") == "built":
        sessions["tensorrt int8"] = PlanSession(Path(plan.engine["file"]), manifest)
    est = 0.0  # one call of every session and batch size, so the timed rounds fit what is left of the step
    for sess in sessions.values():
        for x in batches.values():
            t = time.perf_counter()
            sess.run(None, x)
            est += time.perf_counter() - t
    repeats = max(5, min(50, int(0.5 * seconds_left / max(est, 1e-6))))
    stats = latency_stats(sessions, batches, repeats=repeats, rounds=5)
    return {
        "providers_available": ort.get_available_providers(),
        "median_ms": {k: {b: s[0] for b, s in per.items()} for k, per in stats.items()},
        "rows_per_s": {k: {b: int(b) / (s[0] / 1e3) for b, s in per.items()} for k, per in stats.items()},
    }


def install(wheels: Path) -> str:
    """Install carried wheels into /tmp/site (no index: the device reaches no registry) and import from there."""
    import subprocess

    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not found:
        raise Skip(f"no wheels in {wheels}: using the image's packages as they are")
    target = Path("/tmp/site")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--upgrade",
           "--target", str(target), *map(str, found)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=120)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    return f"installed {len(found)} wheels into {target}"


def probe() -> dict[str, Any]:
    import importlib.util

    from app.runtime.select import detect_host

    host = detect_host()
    mods = {
        m: importlib.util.find_spec(m) is not None for m in ("torch", "tensorrt", "onnxruntime", "fastapi", "uvicorn")
    }
    return {"host": host.__dict__, "modules": mods, "python": sys.version.split()[0]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    budget = Budget(args.budget_s, heartbeat_s=args.heartbeat_s)
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"dry_run": args.dry_run, "repo": str(args.repo), "started_at": time.time()}
    plans: list[ModelPlan] = []
    target: list[ModelPlan] = []  # the model served and timed: the first with an engine, else with a q/dq onnx

    def find() -> str:
        report["probe"] = probe()
        budget.say(f"host: {report['probe']}")
        plans.extend(p for p in find_models(args.repo, work) if not args.models or p.name in args.models)
        if not plans:
            raise RuntimeError(f"{args.repo} has no model with an FP32 version")
        return "models: " + ", ".join(p.name for p in plans)

    def quantize_all() -> str:
        for p in plans:
            if p.qdq is None and budget.step_left() > 5:
                quantize(p, work)
                budget.say(f"{p.name}: q/dq onnx {p.qdq}")
        return "; ".join(f"{p.name}: {p.qdq_source or 'none (out of time)'}" for p in plans)

    def gate_all() -> None:
        for p in plans:
            if budget.step_left() < 5:
                p.gate = {"skipped": "step budget spent"}
                continue
            try:
                gate_one(p)
            except Skip as e:
                p.gate = {"skipped": str(e)}
            budget.say(f"{p.name}: gate {p.gate}")
        built = [p for p in plans if p.engine.get("status") == "built"]
        target.extend((built or [p for p in plans if p.qdq is not None])[:1])

    def serve_one() -> None:
        if not target:
            raise Skip("no model has an engine or a q/dq onnx to serve")
        report["serve"] = serve(target[0], work, budget, args.dry_run)

    def compare_one() -> None:
        if not target:
            raise Skip("no model has an engine or a q/dq onnx to compare")
        report["compare"] = compare(target[0], budget.step_left())

    with budget.heartbeat():
        budget.step("install", STEP_BUDGETS["install"], lambda: install(args.wheels))
        budget.step("probe", STEP_BUDGETS["probe"], find)
        budget.step("quantize", STEP_BUDGETS["quantize"], quantize_all)
        if args.dry_run:
            budget.step("stage-data", STEP_BUDGETS["stage-data"], lambda: stage_data(plans, work))
        budget.step("engines", STEP_BUDGETS["engines"], lambda: _engines(plans, work, budget))
        budget.step("gate", STEP_BUDGETS["gate"], gate_all)
        budget.step("serve", STEP_BUDGETS["serve"], serve_one)
        budget.step("compare", STEP_BUDGETS["compare"], compare_one)
    if args.dry_run:
        shutil.rmtree(work / "serve_repo", ignore_errors=True)  # not carried: the device run publishes its own
        report["carry_mib"] = carry_sizes(args.repo, work, args.wheels)
        budget.say(f"to carry (64 MiB in all): {report['carry_mib']}")
    report["models"] = [p.as_dict() for p in plans]
    report["steps"] = [s.as_dict() for s in budget.steps]
    report["seconds"] = round(budget.elapsed(), 1)
    return report


def _engines(plans: list[ModelPlan], work: Path, budget: Budget) -> None:
    from compress.engine import build_engine

    for p in plans:
        if p.qdq is None:
            p.engine = {"status": "skipped", "reason": "no q/dq onnx"}
            continue
        if budget.step_left() < 10:
            p.engine = {"status": "skipped", "reason": "step budget spent"}
            continue
        out = work / "engines" / p.name
        out.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        res = build_engine(p.qdq, out, max_batch=p.manifest.serving.max_batch_rows)
        p.engine = {**res.as_dict(), "build_s": round(time.monotonic() - t, 2)}
        if res.path is not None:
            p.engine.update(file=str(res.path), bytes=res.path.stat().st_size)
        budget.say(f"{p.name}: engine {p.engine}")


def table(report: dict[str, Any]) -> str:
    """One row per model (engine build, size, gate and retention), then the serving and timing figures."""
    lines = [
        "| model | q/dq source | engine | build s | MiB | gate | retention (engine / FP32) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in report.get("models", []):
        e, g = m["engine"], m["gate"]
        size = f"{e['bytes'] / 2**20:.2f}" if "bytes" in e else "-"
        gate = (
            ("passed" if g.get("passed") else f"FAILED: {g.get('reason')}") if "passed" in g else g.get("skipped", "-")
        )
        ret = ", ".join(f"{k} {v:.4f}" for k, v in g.get("retention", {}).items()) or "-"
        status = e.get("status", "-") + (f" ({e['reason']})" if e.get("reason") else "")
        lines.append(
            f"| {m['model']} | {m['qdq_source'] or '-'} | {status} | {e.get('build_s', '-')} | {size} | {gate} | {ret} |"
        )
    if "compare" in report:
        c = report["compare"]
        sizes = sorted({b for per in c["median_ms"].values() for b in per}, key=int)
        lines += ["", "| runtime | " + " | ".join(f"ms @ {b} rows" for b in sizes) + " | rows/s @ largest |",
                  "|---" * (len(sizes) + 2) + "|"]  # fmt: skip
        for k, per in c["median_ms"].items():
            lines.append(
                f"| {k} | " + " | ".join(f"{per[b]:.3f}" for b in sizes) + f" | {c['rows_per_s'][k][sizes[-1]]:.0f} |"
            )
    if "serve" in report:
        s = report["serve"]
        lines += ["", f"served {s['model']} as {s['platform']} ({s['selection']['here']})"]
        for rows in (1, 64):
            r = s.get(f"rows_{rows}")
            if r:
                lines.append(f"  {rows} rows/request, 8 clients: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                             f"p99 {r['p99_ms']:.2f} ms, errors {r['errors']}")  # fmt: skip
    lines += ["", "steps: " + ", ".join(f"{s['name']} {s['status']} {s['seconds']}s" for s in report.get("steps", []))]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="check every step a CPU can check (no GPU needed)")
    p.add_argument("--repo", type=Path, default=Path("model_repo"), help="model repository (default: model_repo)")
    p.add_argument("--work", type=Path, default=Path(".gpucheck"), help="q/dq files, engines, served repo")
    p.add_argument("--wheels", type=Path, default=Path(".whl"), help="carried wheels to install first")
    p.add_argument("--models", nargs="*", help="only these models")
    p.add_argument("--json", type=Path, help="write the report here (default: $OUT/gpu_check.json if $OUT is set)")
    p.add_argument("--budget-s", type=float, default=540.0, help="the whole run's time budget")
    p.add_argument("--heartbeat-s", type=float, default=20.0, help="progress line at least this often")
    p.add_argument("--print-wheels", action="store_true", help="print the pip download command for --wheels")
    return p.parse_args(argv)


def wheel_command() -> str:
    """``pip download`` of :data:`CARRY_WHEELS` for the device's Python 3.12, pinned to the versions installed
    here (so pydantic and pydantic-core match each other and the code they run)."""
    from importlib.metadata import PackageNotFoundError, version

    names = []
    for name in CARRY_WHEELS:
        try:
            names.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            names.append(name)
    tags = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
            "manylinux_2_5_x86_64", "manylinux1_x86_64", "any")  # fmt: skip
    plats = " ".join(f"--platform {p}" for p in tags)
    return (f"python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp {plats} "
            f"-d .whl {' '.join(names)}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.environ.get("DATA_DIR") and (args.work / "data").is_dir():  # the data staged by a dry run
        os.environ["DATA_DIR"] = str((args.work / "data").resolve())
    if args.print_wheels:
        print(wheel_command())
        return 0
    report = run(args)
    print(table(report), flush=True)
    dest = args.json or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(report, indent=2, default=str))
        print(f"report: {dest}", flush=True)
    failed = [s["name"] for s in report["steps"] if s["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
