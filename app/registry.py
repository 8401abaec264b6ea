"""Loaded model versions: verify, load, warm up, serve, drain, unload, with the old version kept on failure.

State machine of one version (what ``POST /v2/repository/index`` reports)::

    LOADING --(verified, loaded, warmed)--> READY --(newer READY / removed / admin unload)--> UNLOADING
       |                                                                                       |
       +--(any step fails: reason recorded, never served)--> UNAVAILABLE <--(drained, freed)---+

Requests *lease* a READY version for their whole duration; a retiring version takes no new leases and is
unloaded once its leases and queued batches are done (or ``drain_timeout_s`` passes). All bookkeeping happens
on the event loop; blocking work (hashing, session creation, warm-up) runs in a dedicated loader thread.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from app.batching import BatchConfig, DynamicBatcher
from app.errors import ModelNotFound, ModelNotReady, names_hint
from app.manifest import MODEL_NAME_RE, Manifest
from app.metrics import Metrics, VersionBatchStats
from app.repository import (
    Fingerprint,
    RepositoryError,
    RepositoryUnreadable,
    Scan,
    fingerprint,
    load_verified,
    recheck_files,
    scan_repository,
)
from app.rollout import drift
from app.rollout.policy import Policy, PolicyError, check_versions, read_policy
from app.runtime.base import Runtime, RuntimeIncompatible, RuntimeOptions
from app.runtime.select import HostCapabilities, choose_runtime, detect_host
from app.settings import Settings, VersionPolicy, first_set
from app.tasks.base import Task, TaskContext, VersionFiles
from app.tasks.registry import task_for_kind

LOG = logging.getLogger(__name__)


class VersionState(str, enum.Enum):
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


RuntimeFactory = Callable[[Manifest], Runtime]
"""Makes the runtime for one version: the manifest says which artifacts exist, the factory picks one."""


def default_runtime_factory(settings: Settings, host: HostCapabilities | None = None) -> RuntimeFactory:
    """Artifact and engine per version from its manifest and this host (see :mod:`app.runtime.select`)."""
    options = RuntimeOptions(
        intra_op_threads=settings.ort_intra_op_threads,
        inter_op_threads=settings.ort_inter_op_threads,
        allow_spinning=settings.ort_allow_spinning,
        use_tensorrt=settings.ort_use_tensorrt,
    )

    def make(manifest: Manifest) -> Runtime:
        choice = choose_runtime(manifest, host or detect_host(), use_tensorrt_ep=settings.ort_use_tensorrt)
        LOG.info(
            "%s/%s runs %s on %s: %s",
            manifest.name,
            manifest.version,
            choice.artifact.path,
            choice.engine,
            choice.reason,
        )
        if choice.engine == "tensorrt":
            from app.runtime.tensorrt import TensorRTRuntime

            return TensorRTRuntime(choice)
        from app.runtime.onnx import OnnxRuntime

        return OnnxRuntime(options, choice)

    return make


def is_synthetic(manifest: Manifest) -> bool:
    """``compress demo`` without real data publishes models of a generated log and says so in the lineage."""
    return bool(manifest.lineage.split.get("synthetic", False))


class LoadFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(eq=False)
class ModelVersion:
    """A loaded version with its runtime, batcher and pre-processing state."""

    model: str
    version: int
    path: Path
    manifest: Manifest
    runtime: Runtime
    task: Task | None = None
    batcher: DynamicBatcher | None = None
    state: VersionState = VersionState.READY
    leases: int = 0
    files: Fingerprint = field(default_factory=dict)
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class VersionStatus:
    state: VersionState
    reason: str = ""


def select_versions(on_disk: list[int], failed: set[int], policy: VersionPolicy) -> set[int]:
    """Versions the policy wants served; failed versions are skipped so the previous healthy one stays."""
    healthy = [v for v in on_disk if v not in failed]
    if policy.specific is not None:
        return set(policy.specific) & set(healthy)
    return set(healthy[-(policy.latest or 1) :])


def describe_policy(policy: Policy) -> str:
    """One line for logs: ``stable 1, canary 2 at 5% (sticky user_id), shadow 3 at 10%``."""
    parts = [f"stable {policy.stable}"]
    c, sh = policy.canary, policy.shadow
    if c is not None:
        parts.append(f"canary {c.version} at {c.weight:.0%}" + (f" (sticky {c.sticky})" if c.sticky else ""))
    if sh is not None:
        parts.append(f"shadow {sh.version} at {sh.rate:.0%}")
    return ", ".join(parts)


class Lease:
    """``with registry.lease(...) as mv``: counts the request on the version so a swap drains it before unloading
    (a class, not ``@contextmanager``: a generator per request cost more than the rest of the lookup)."""

    __slots__ = ("mv",)

    def __init__(self, mv: ModelVersion) -> None:
        self.mv = mv
        mv.leases += 1
        mv.released.clear()

    def __enter__(self) -> ModelVersion:
        return self.mv

    def __exit__(self, *exc: object) -> None:
        mv = self.mv
        mv.leases -= 1
        if mv.leases == 0:
            mv.released.set()


class ModelRegistry:
    """name -> version -> :class:`ModelVersion`, plus the status of every version ever seen."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        runtime_factory: RuntimeFactory | None = None,
        ctx: TaskContext | None = None,
    ) -> None:
        self.settings = settings
        self.root = Path(settings.model_repo)
        self.metrics = metrics
        self.ctx = ctx or TaskContext(settings, metrics)
        self._new_runtime = runtime_factory or default_runtime_factory(settings)
        self._loaded: dict[str, dict[int, ModelVersion]] = {}
        self._status: dict[tuple[str, int], VersionStatus] = {}
        self._failed: dict[str, set[int]] = {}
        self._disabled: set[str] = set()
        self._on_disk: dict[str, list[int]] = {}
        self._lock = asyncio.Lock()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self._retiring: set[asyncio.Task[None]] = set()
        self.required: set[str] = set(settings.required_models or [])
        self._auto_required = not settings.required_models
        self.scanned = False
        """A scan of the repository has succeeded: until then nothing is "not found", only "not ready"."""
        self.synced = asyncio.Event()
        """Set once a sync has scanned successfully and loaded what it could (a new worker listens after it)."""
        self.repository_problem = ""
        """Why the last scan was not trusted ("" when it was): the versions it would have retired are kept."""
        self.integrity: dict[tuple[str, int], str] = {}
        """Loaded versions whose files changed or vanished on disk: served from memory, never loaded again."""
        self.policies: dict[str, Policy] = {}
        """The last good rollout policy per model (``<model>/policy.json``); a model without one serves its
        newest ready version."""
        self._policy_problem: dict[str, str] = {}

    # ---- request side ----
    def lease(self, model: str, version: int | None = None) -> Lease:
        """Hold a READY version (the default one if ``version`` is None) until the ``with`` block exits."""
        return Lease(self.resolve(model, version))

    def resolve(self, model: str, version: int | None = None) -> ModelVersion:
        versions = self._loaded.get(model)
        if versions is None:
            if not MODEL_NAME_RE.match(model):  # traversal attempts and junk never reach the file system
                raise ModelNotFound(f"{model!r} is not a valid model name")
            versions = {}
        if version is None:
            policy = self.policies.get(model)
            if policy is not None:  # the stable version, while it is READY
                mv = versions.get(policy.stable)
                if mv is not None and mv.state is VersionState.READY:
                    return mv
            newest = None  # a plain loop: this runs several times per request
            for v in versions.values():
                if v.state is VersionState.READY and (newest is None or v.version > newest.version):
                    newest = v
            if newest is not None:
                return newest
            if model in self._on_disk or model in self._loaded or not self.scanned:
                raise ModelNotReady(f"model {model!r} has no ready version")
            raise self.not_in_repository(model)
        mv = versions.get(version)
        if mv is not None and mv.state is VersionState.READY:
            return mv
        status = self._status.get((model, version))
        if status is not None or version in self._on_disk.get(model, []) or not self.scanned:
            state = status.state.value if status else "not selected by the version policy"
            raise ModelNotReady(f"version {version} of model {model!r} is not ready ({state})")
        raise ModelNotFound(f"model {model!r} has no version {version}")

    def version_ready(self, model: str, version: int) -> bool:
        mv = self._loaded.get(model, {}).get(version)
        return mv is not None and mv.state is VersionState.READY

    def ready_versions(self, model: str) -> list[int]:
        return sorted(v.version for v in self._loaded.get(model, {}).values() if v.state is VersionState.READY)

    def models(self) -> set[str]:
        """Every model known here: on disk, loaded or required."""
        return set(self._on_disk) | set(self._loaded) | self.required

    def loaded(self) -> list[ModelVersion]:
        """Every version held in memory (READY or draining)."""
        return [mv for versions in self._loaded.values() for mv in versions.values()]

    def is_ready(self) -> bool:
        return self.scanned and all(self.ready_versions(m) for m in self.required)

    def index(self) -> list[dict[str, str]]:
        """Every version on disk or known to the registry, with its state and reason."""
        keys = {(m, v) for m, vs in self._on_disk.items() for v in vs} | set(self._status)
        out = []
        for m, v in sorted(keys):
            status = self._status.get((m, v))
            if status is None:
                status = VersionStatus(VersionState.UNAVAILABLE, "not selected by the version policy")
            out.append({"name": m, "version": str(v), "state": status.state.value, "reason": status.reason})
        return out

    # ---- repository side ----
    async def sync(self, only: str | None = None) -> None:
        """Rescan the repository and converge: load wanted versions, then retire the unwanted ones.

        A scan that cannot read the repository changes nothing (the last good versions keep serving)."""
        async with self._lock:
            if not await self._rescan():
                return
            try:
                for model in sorted(set(self._on_disk) | set(self._loaded)):
                    if (only is None or model == only) and model not in self._disabled:
                        await self._converge(model)
            finally:
                self.synced.set()

    async def scan(self) -> bool:
        """Look at the repository without loading anything (startup: know what exists before serving)."""
        async with self._lock:
            return await self._rescan()

    async def _rescan(self) -> bool:
        """Refresh ``_on_disk`` from a scan it can trust; False (and nothing changed) when the repository could
        not be read at all."""
        loop = asyncio.get_running_loop()
        try:
            scan = await loop.run_in_executor(self._loader, scan_repository, self.root)
        except RepositoryUnreadable as e:
            self._report_problem(e.reason, str(e))
            return False
        on_disk, problem = self._trusted(scan)
        if problem:
            self._report_problem(*problem)
        elif self.repository_problem:
            LOG.warning("model repository readable again: %s", self.root)
            self.repository_problem = ""
            self.metrics.repository_degraded.set(0)
        self._on_disk = on_disk
        for model, version in list(self.integrity):
            if model in scan.versions and version not in scan.versions[model]:
                del self.integrity[(model, version)]  # the broken version was removed: nothing left to report
        if not self.scanned:
            self.scanned = True
            if self._auto_required:
                self.required = set(on_disk)
            LOG.info("readiness waits for %s", sorted(self.required) or "nothing")
        await loop.run_in_executor(self._loader, self._recheck_integrity, scan)
        return True

    def _trusted(self, scan: Scan) -> tuple[dict[str, list[int]], tuple[str, str] | None]:
        """The scan with every model that vanished, emptied or became unreadable kept at its last known versions.

        A version is retired only on positive evidence: its folder is gone while the model's folder still lists
        other versions. A model with no visible version at all is a remount, an ``mv`` + ``mkdir`` or a
        permission change far more often than an intent to stop serving it (that is the unload API's job)."""
        on_disk = dict(scan.versions)
        held: list[str] = []
        for model, before in self._on_disk.items():
            if not before or on_disk.get(model):
                continue
            why = scan.unreadable.get(model) or (
                f"{model}/ has no published version" if model in scan.versions else f"{model}/ is missing"
            )
            on_disk[model] = before
            held.append(why)
        if not held:
            return on_disk, None
        if not scan.versions and not scan.unreadable:
            reason = "empty"
        elif all(m in scan.unreadable for m, before in self._on_disk.items() if before and not scan.versions.get(m)):
            reason = "model_unreadable"
        else:
            reason = "model_missing"
        return on_disk, (reason, "; ".join(held))

    def _report_problem(self, reason: str, message: str) -> None:
        """Count every untrusted scan; log once per change of problem (not every rescan)."""
        self.metrics.repository_scan_problems.labels(reason).inc()
        self.metrics.repository_degraded.set(1)
        detail = f"{reason}: {message}; keeping the loaded versions"
        if detail != self.repository_problem:
            LOG.error("model repository scan not trusted (%s)", detail)
        self.repository_problem = detail

    def _recheck_integrity(self, scan: Scan) -> None:
        """Loader thread: files of served versions still on disk must still be the verified ones."""
        for model, versions in list(self._loaded.items()):
            for version, mv in list(versions.items()):
                key = (model, version)
                if mv.state is not VersionState.READY or key in self.integrity:
                    continue
                if version not in scan.versions.get(model, []):
                    continue  # gone (retired by the scan) or not readable now: not evidence of tampering
                found = recheck_files(mv.path, mv.manifest, mv.files)
                if found is not None:
                    self.integrity[key] = f"{found[0]}: {found[1]}"

    def integrity_problems(self) -> list[str]:
        return [f"{m}/{v}: {why}" for (m, v), why in sorted(self.integrity.items())]

    async def _converge(self, model: str) -> None:
        for (m, version), why in self.integrity.items():
            if m == model and version not in self._failed.setdefault(model, set()):
                # Never load it again (a new worker would refuse it too): the previous healthy version takes
                # over in every worker alike, or, without one, the loaded copy keeps serving.
                self._failed[model].add(version)
                self._status[(model, version)] = VersionStatus(VersionState.READY, f"files changed on disk ({why})")
                self.metrics.integrity_failures.labels(model, str(version), why.split(":", 1)[0]).inc()
                LOG.error(
                    "version %s/%s: %s; serving the loaded copy until a replacement is READY", model, version, why
                )
        on_disk = self._on_disk.get(model, [])
        policy = await self._refresh_policy(model, on_disk)
        if policy is None:
            wanted = select_versions(on_disk, self._failed.get(model, set()), self.settings.policy_for(model))
        else:  # only named versions: a newly published one takes no traffic until the policy names it
            wanted = policy.named() & (set(on_disk) - self._failed.get(model, set()))
        loaded = self._loaded.setdefault(model, {})
        for version in sorted(wanted - set(loaded), reverse=True):
            await self._load(model, version)
        any_wanted_ready = any(loaded[v].state is VersionState.READY for v in wanted if v in loaded)
        for version, mv in list(loaded.items()):
            gone = version not in on_disk
            if version not in wanted and mv.state is VersionState.READY and (any_wanted_ready or gone):
                changed = self.integrity.get((model, version))
                self._start_retire(mv, f"unloaded: files changed on disk ({changed})" if changed else "unloaded")

    async def _refresh_policy(self, model: str, on_disk: list[int]) -> Policy | None:
        """Read the model's policy; a malformed one, or one naming an unpublished version, is ignored (a log
        line once per distinct problem, a metric per rescan) and the last good policy stays in force."""
        loop = asyncio.get_running_loop()
        try:
            policy = await loop.run_in_executor(self._loader, read_policy, self.root, model)
            if policy is not None:
                check_versions(policy, on_disk, model)
        except PolicyError as e:
            self.metrics.policy_problems.labels(model, e.reason).inc()
            if self._policy_problem.get(model) != str(e):
                kept = self.policies.get(model)
                LOG.error(
                    "rollout policy of %s ignored (%s): %s; keeping %s",
                    model,
                    e.reason,
                    e,
                    "the last good policy" if kept else "no policy (newest ready version)",
                )
                self._policy_problem[model] = str(e)
            return self.policies.get(model)
        self._policy_problem.pop(model, None)
        before = self.policies.get(model)
        if policy is None:
            if before is not None:
                LOG.info("rollout policy of %s removed: serving the newest ready version", model)
                del self.policies[model]
            return None
        if policy != before:
            LOG.info("rollout policy of %s: %s", model, describe_policy(policy))
            self.policies[model] = policy
        return policy

    async def _load(self, model: str, version: int) -> None:
        self._status[(model, version)] = VersionStatus(VersionState.LOADING)
        loop = asyncio.get_running_loop()
        try:
            mv = await loop.run_in_executor(self._loader, self._load_blocking, model, version)
        except LoadFailed as e:
            self._failed.setdefault(model, set()).add(version)
            self._status[(model, version)] = VersionStatus(VersionState.UNAVAILABLE, f"{e.reason}: {e}")
            self.metrics.load_failures.labels(model, str(version), e.reason).inc()
            LOG.error("version %s/%s failed to load (%s): %s", model, version, e.reason, e)
            return
        config = self.batch_config(mv.manifest)
        stats = VersionBatchStats(self.metrics, model, version)
        infer = mv.task.infer_fn(mv.runtime.infer) if mv.task is not None else mv.runtime.infer
        mv.batcher = DynamicBatcher(f"{model}/{version}", infer, config, stats)
        mv.batcher.start()
        self._loaded.setdefault(model, {})[version] = mv
        self._status[(model, version)] = VersionStatus(VersionState.READY)
        self.metrics.load_events.labels(model, str(version), "load").inc()
        self.metrics.loaded_bytes.labels(model, str(version)).set(mv.runtime.bytes)
        choice = getattr(mv.runtime, "choice", None)
        device = choice.device if choice is not None else "custom"
        self.metrics.runtime_info.labels(model, str(version), mv.runtime.platform, device).set(1)
        # Vocabularies and sessions live for the version's lifetime: keep them out of the cyclic GC's scans
        # (full collections over them took 30-50 ms, the whole p99 budget). Refcounting still frees them.
        gc.freeze()
        LOG.info("version %s/%s is READY (%d bytes, %s)", model, version, mv.runtime.bytes, config)
        if is_synthetic(mv.manifest):
            LOG.warning("version %s/%s was trained on SYNTHETIC demo data: its scores mean nothing", model, version)

    def batch_config(self, manifest: Manifest) -> BatchConfig:
        s, m, own = self.settings, manifest.serving, self.settings.for_model(manifest.name)
        delay_us = first_set(own.max_queue_delay_us, s.max_queue_delay_us)
        return BatchConfig(
            max_batch_rows=own.max_batch_rows or s.max_batch_rows or m.max_batch_rows,
            max_queue_delay_us=delay_us if delay_us is not None else m.max_queue_delay_us,
            queue_cap_rows=own.queue_cap_rows or s.queue_cap_rows or m.queue_cap_rows,
            concurrency=s.batch_concurrency,
            queue_budget_s=s.queue_budget_for(manifest.name, m.queue_budget_ms),
            max_in_flight=s.max_in_flight_for(manifest.name),
            adaptive=s.adaptive_config_for(manifest.name),
            inline_max_s=s.inline_batch_us / 1e6,
        )

    def _load_blocking(self, model: str, version: int) -> ModelVersion:
        """Loader thread: verify, load, load pre-processing, warm up; any failure leaves nothing loaded."""
        try:
            ref, manifest = load_verified(self.root, model, version)
        except RepositoryError as e:
            raise LoadFailed(e.reason, str(e)) from None
        task_cls = self._task_class(manifest)
        try:
            runtime = self._new_runtime(manifest)
        except RuntimeIncompatible as e:
            raise LoadFailed("incompatible", str(e)) from None
        task: Task | None = None
        try:
            step = "load_error"
            runtime.load(ref.path, manifest)
            step = "preprocess_error"
            task = task_cls.load(VersionFiles(ref.path, manifest), self.ctx) if task_cls else None
            step = "warmup_error"
            cap = self.batch_config(manifest).max_batch_rows
            runtime.warmup(sorted({min(b, cap) for b in manifest.serving.warmup_batch_sizes}))
            if task is not None:
                task.warmup()
        except Exception as e:  # noqa: BLE001 - any engine or task error means "not servable"
            if task is not None:
                task.close()
            runtime.unload()
            if isinstance(e, RuntimeIncompatible):
                raise LoadFailed("incompatible", str(e)) from None
            raise LoadFailed(step, f"{type(e).__name__}: {e}") from None
        mv = ModelVersion(model, version, ref.path, manifest, runtime, task)
        try:
            mv.files = fingerprint(ref.path, manifest)
        except OSError:
            mv.files = {}  # re-hashed on the next check instead
        return mv

    @staticmethod
    def _task_class(manifest: Manifest) -> type[Task] | None:
        pre = manifest.preprocessing
        if pre is None:
            return None
        cls = task_for_kind(pre.kind)
        if cls is None:
            from app.tasks.registry import task_classes

            raise LoadFailed(
                "incompatible", f"unknown preprocessing kind {pre.kind!r} (known: {sorted(task_classes())})"
            )
        return cls

    # ---- retiring ----
    def _start_retire(self, mv: ModelVersion, reason: str = "unloaded") -> None:
        mv.state = VersionState.UNLOADING
        self._status[(mv.model, mv.version)] = VersionStatus(VersionState.UNLOADING)
        task = asyncio.get_running_loop().create_task(self._retire(mv, reason), name=f"retire-{mv.model}/{mv.version}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, mv: ModelVersion, reason: str = "unloaded") -> None:
        """Stop new work, wait for in-flight work, free the session."""
        timeout = self.settings.drain_timeout_s
        if mv.leases:
            try:
                async with asyncio.timeout(timeout):
                    await mv.released.wait()
            except TimeoutError:
                LOG.warning("%s/%s: %d requests still in flight after %.0fs", mv.model, mv.version, mv.leases, timeout)
        if mv.batcher is not None:
            await mv.batcher.close(timeout)
        await asyncio.get_running_loop().run_in_executor(self._loader, self._free, mv)
        self._loaded.get(mv.model, {}).pop(mv.version, None)
        # Loads call gc.freeze(): frozen objects are never examined by the cyclic GC again, so an unloaded version
        # must be freed by refcounting alone (a reference cycle through it leaked ~2-5 MB per load/unload): the
        # batcher breaks its cycle with its supervisor on close. tests/reliability checks 200 cycles.
        self._status[(mv.model, mv.version)] = VersionStatus(VersionState.UNAVAILABLE, reason)
        self.metrics.load_events.labels(mv.model, str(mv.version), "unload").inc()
        self.metrics.forget_version(mv.model, mv.version)
        drift.forget_version(mv.model, mv.version)
        LOG.info("version %s/%s unloaded", mv.model, mv.version)

    @staticmethod
    def _free(mv: ModelVersion) -> None:
        if mv.task is not None:
            mv.task.close()
        mv.runtime.unload()

    # ---- explicit control (repository API) ----
    async def load_model(self, model: str) -> None:
        """Re-enable ``model``, forget its past failures, and converge now; raises if nothing became ready."""
        try:
            scan = await asyncio.to_thread(scan_repository, self.root)
        except RepositoryUnreadable as e:
            raise ModelNotReady(f"cannot load {model!r} now: {e.reason}") from None
        if model not in scan.versions and model not in scan.unreadable:
            raise ModelNotFound(
                f"model {model!r} is not in the repository; {names_hint(model, sorted(scan.versions), 'models')}"
            )
        self._disabled.discard(model)
        self._failed.pop(model, None)
        await self.sync(only=model)
        if not self.ready_versions(model):
            reasons = [s["reason"] for s in self.index() if s["name"] == model and s["reason"]]
            raise ModelNotReady(f"model {model!r} failed to load: {'; '.join(reasons) or 'no version'}")

    async def unload_model(self, model: str) -> None:
        """Retire every version of ``model`` and keep it unloaded until an explicit load."""
        self.resolve_name(model)
        async with self._lock:
            self._disabled.add(model)
            versions = [mv for mv in self._loaded.get(model, {}).values() if mv.state is VersionState.READY]
            for mv in versions:
                mv.state = VersionState.UNLOADING
                self._status[(model, mv.version)] = VersionStatus(VersionState.UNLOADING)
            await asyncio.gather(*(self._retire(mv) for mv in versions))

    def resolve_name(self, model: str) -> None:
        if model not in self._on_disk and model not in self._loaded:
            raise self.not_in_repository(model)

    def not_in_repository(self, model: str) -> ModelNotFound:
        """The 404 for an unknown name, listing the models served (and the close match) so a typo is obvious."""
        served = set(self._on_disk) | set(self._loaded)
        return ModelNotFound(f"model {model!r} is not in the repository; {names_hint(model, served, 'models served')}")

    async def close(self) -> None:
        """Shutdown: finish retirements, then drain and unload everything."""
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        everything = [mv for vs in self._loaded.values() for mv in vs.values()]
        for mv in everything:
            mv.state = VersionState.UNLOADING
        await asyncio.gather(*(self._retire(mv, "shutdown") for mv in everything), return_exceptions=True)
        self._loader.shutdown(wait=True)
        self.ctx.close()
