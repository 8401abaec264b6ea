"""``POST /v1/recommend`` and ``POST /v1/events``: personalised products from recent history (``rec-v1``).

Each recommendation request is one batcher row. The worker thread's ``prepare`` reads the feature-store
histories of every row of the batch that needs one in ONE call (one pipelined Redis round trip), builds the
``history`` and ``exclude`` tensors, and the model's graph does the rest (MatMul + TopK over the whole
catalogue, exclusions pushed to -inf before TopK, so ``k`` results are exact without over-fetching). A version
whose manifest names an ANN index (aux role ``ann_index``) runs its user tower instead and one index search per
batch (:mod:`app.tasks.recommend.retrieval`). Every row's exclusions (request ``exclude``, purchases when asked,
items marked unavailable through ``POST /v1/catalogue/availability``) are assembled in :meth:`RecommendTask.exclusions`.
A feature store that does not answer never fails a request: the row uses the request's own history (or none:
the model's history-free scores, i.e. learned popularity) and is answered with ``degraded: true``, counted in
``rec_feature_store_degraded_total``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from prometheus_client import Counter

from app import tracing
from app.errors import InvalidInput
from app.rollout.compare import Comparison, overlap_at
from app.tasks.base import Call, InferFn, Route, Task, TaskContext, Tensors, VersionFiles
from app.tasks.recommend.availability import Availability, make_availability
from app.tasks.recommend.ids import IdMap, StringColumn, release_freed_heap
from app.tasks.recommend.retrieval import INDEX_ROLE, ITEMS_ROLE, AnnRetrieval, set_threads
from app.tasks.recommend.schemas import (
    AvailabilityRequest,
    AvailabilityResponse,
    EventRequest,
    EventResponse,
    RecommendRequest,
    RecommendResponse,
)
from app.tasks.recommend.seen import SeenSets
from app.tasks.recommend.state import HISTORIES_FILE, KIND, RecState, load_histories
from app.tasks.recommend.store import Event, FeatureStore, StoreUnavailable, make_store, purchased

LOG = logging.getLogger(__name__)
STORE, METRICS, AVAILABILITY = "rec_feature_store", "rec_metrics", "rec_availability"
DEFAULT_CAP, DEFAULT_TTL_S = 100, 90 * 86400
SOURCES = ("request", "store", "none")


class RecMetrics:
    def __init__(self, ctx: TaskContext) -> None:
        self.degraded = Counter(
            "rec_feature_store_degraded",
            "Rows answered without the feature store.",
            ["reason"],
            registry=ctx.metrics.registry,
        )
        self.events = Counter(
            "rec_events",
            "Events received, by type and outcome (stored|dropped).",
            ["type", "outcome"],
            registry=ctx.metrics.registry,
        )


def feature_store(ctx: TaskContext) -> FeatureStore:
    cfg = ctx.settings

    def make() -> FeatureStore:
        return make_store(
            cfg.redis_url,
            DEFAULT_CAP,
            DEFAULT_TTL_S,
            max_users=cfg.feature_store_max_users,
            max_bytes=cfg.feature_store_max_mb * 2**20,
            trim_interval_s=cfg.feature_store_trim_interval_s,
        )

    store: FeatureStore = ctx.resource(STORE, make)
    return store


def availability(ctx: TaskContext) -> Availability:
    av: Availability = ctx.resource(AVAILABILITY, lambda: make_availability(ctx.settings.redis_url))
    return av


def rec_metrics(ctx: TaskContext) -> RecMetrics:
    m: RecMetrics = ctx.resource(METRICS, lambda: RecMetrics(ctx))
    return m


async def recommend(req: RecommendRequest, call: Call[RecommendTask]) -> dict[str, Any]:
    task = call.task
    row, unknown = task.validate(req)
    out = await call.submit([row])
    items = task.items_out(out["item_ids"][0], out["scores"][0], req.k)
    return {
        "items": items,
        "model": call.model,
        "version": call.version,
        "degraded": bool(out["_degraded"][0]),
        "history_source": SOURCES[int(out["_source"][0])],
        "history_used": int(out["_used"][0]),
        "unknown_items": unknown,
    }


async def events(req: EventRequest, call: Call[Any]) -> dict[str, Any]:
    store, metrics = feature_store(call.ctx), rec_metrics(call.ctx)
    event = [Event(req.item_id, req.type)]
    try:
        if store.backend == "memory":
            store.append(req.user_id, event)
        else:
            await asyncio.to_thread(store.append, req.user_id, event)
    except StoreUnavailable as e:
        LOG.warning("event not stored: %s", e)
        metrics.events.labels(req.type, "dropped").inc()
        metrics.degraded.labels("events").inc()
        return {"stored": False, "degraded": True, "backend": store.backend}
    metrics.events.labels(req.type, "stored").inc()
    return {"stored": True, "degraded": False, "backend": store.backend}


async def mark_availability(req: AvailabilityRequest, call: Call[Any]) -> dict[str, Any]:
    av = availability(call.ctx)
    try:
        if av.backend == "memory":
            n = av.mark(req.items, req.available)
        else:
            n = await asyncio.to_thread(av.mark, req.items, req.available)
    except StoreUnavailable as e:
        LOG.warning("availability not changed: %s", e)
        return {"acknowledged": False, "degraded": True, "backend": av.backend, "unavailable_items": -1}
    return {"acknowledged": True, "degraded": False, "backend": av.backend, "unavailable_items": n}


RECOMMEND_EXAMPLE = {
    "items": [
        {"item_id": "85123A", "score": 7.91, "title": "WHITE HANGING HEART T-LIGHT HOLDER"},
        {"item_id": "22423", "score": 6.87, "title": "REGENCY CAKESTAND 3 TIER"},
    ],
    "model": "recommend",
    "version": 2,
    "degraded": False,
    "history_source": "store",
    "history_used": 14,
    "unknown_items": [],
}


def seed_message(backend: str, known: int, added: int) -> str:
    """What seeding did, in words that cannot be misread: with several workers the first one writes the shared
    store and the others find every customer already there (``added`` = 0 is then the expected outcome)."""
    msg = f"feature store ({backend}) seeded from {HISTORIES_FILE}: {added} of {known} customers written"
    if added < known:
        msg += f", {known - added} already present (seeded by another worker, or live events)"
    return msg


class RecommendTask(Task):
    kind = KIND
    name = "recommend"
    default_model = "recommend"
    routes = (
        Route(
            "/v1/recommend",
            "recommend",
            RecommendRequest,
            RecommendResponse,
            recommend,
            summary="Personalised products for a customer or a session",
            description="Top-`k` products from the customer's recent history (`user_id`: read from the feature "
            "store) or from `history` sent with the request (anonymous sessions). Unknown history ids are skipped "
            "and listed in `unknown_items`. If the feature store does not answer, the answer uses the request's "
            "own history or popularity and says `degraded: true` (never a 5xx).",
            examples={
                "customer": {"user_id": "12347", "k": 10, "exclude_purchased": False},
                "session": {"history": ["85123A", "71053"], "k": 5},
            },
            errors={400: "invalid_json", 422: "invalid_request, missing_history, too_many_excludes, k_too_large"},
            response_example=RECOMMEND_EXAMPLE,
        ),
        Route(
            "/v1/events",
            "events",
            EventRequest,
            EventResponse,
            events,
            summary="Record a customer event (view, cart, purchase)",
            description="Appends the item to the customer's recent-history list in the feature store (capped, "
            "with a TTL); the next `/v1/recommend` for that `user_id` sees it. If the store is down the event is "
            "dropped and the answer says `stored: false, degraded: true`.",
            examples={"purchase": {"user_id": "12347", "item_id": "85123A", "type": "purchase"}},
            errors={400: "invalid_json", 422: "invalid_request"},
            response_example={"stored": True, "degraded": False, "backend": "redis"},
            needs_model=False,
        ),
        Route(
            "/v1/catalogue/availability",
            "availability",
            AvailabilityRequest,
            AvailabilityResponse,
            mark_availability,
            summary="Mark items unavailable (or available again) for recommendations",
            description="Items marked unavailable are never returned by `/v1/recommend` in any answer issued after "
            "this call is acknowledged (every worker reads the mark on its next batch; no new version). With "
            "Redis the mark is shared by every pod; without it, by the workers of this pod. If the store does not "
            "answer, nothing changes and the answer says `acknowledged: false, degraded: true`.",
            examples={"out of stock": {"items": ["85123A", "22423"], "available": False}},
            errors={400: "invalid_json", 422: "invalid_request"},
            response_example={"acknowledged": True, "degraded": False, "backend": "redis", "unavailable_items": 2},
            needs_model=False,
        ),
    )

    def __init__(
        self,
        state: RecState,
        store: FeatureStore,
        metrics: RecMetrics,
        avail: Availability | None = None,
        ann: AnnRetrieval | None = None,
        seen: SeenSets | None = None,
        ids: IdMap | None = None,
    ) -> None:
        self.ids = ids if ids is not None else IdMap(state.items)
        self.titles = StringColumn(state.titles)
        # the per-item Python strings are dropped: ids and titles live in the compact columns above
        self.state = replace(state, items=[], titles=[])
        self.store, self.metrics = store, metrics
        self.avail, self.ann = avail, ann
        self.readable = state.history_items or len(self.ids)  # history ids the user tower has rows for
        self.retired = np.asarray(state.retired, np.int64)
        self._unavailable: tuple[frozenset[str], np.ndarray] = (frozenset(), np.zeros(0, np.int64))
        self.seen = seen or SeenSets({})

    @classmethod
    def load(cls, files: VersionFiles, ctx: TaskContext) -> RecommendTask:
        files.aux("histories")
        state = RecState.load(files.state())
        store = feature_store(ctx)
        if store.backend != "redis":  # Redis is filled by `python -m compress features load`
            hist = load_histories(files.aux("histories"))
            n = store.load({u: [Event(i, "purchase") for i in h] for u, h in hist.items()}, only_missing=True)
            LOG.info(seed_message(store.backend, len(hist), n))
        ann = None
        if files.has(INDEX_ROLE):  # the manifest names the retrieval: an ANN index, else the dense graph
            set_threads(1)  # one worker per core (and again in the searching thread: see infer_fn)
            params = dict(files.manifest.recipe.get("index", {}))
            ann = AnnRetrieval.load(files.aux(INDEX_ROLE), files.aux(ITEMS_ROLE), params)
            LOG.info("recommend retrieval: %s (%s)", params.get("factory", "ann"), files.manifest.candidate)
        ids = IdMap(state.items)
        seen = SeenSets.load(files.aux("seen"), ids) if state.exclude_seen else None
        task = cls(state, store, rec_metrics(ctx), availability(ctx), ann, seen, ids)
        del state, ids  # the parsed per-item strings: only the compact columns are kept
        release_freed_heap()
        return task

    def infer_fn(self, runtime_infer: InferFn) -> InferFn:
        """ANN versions: the ONNX user tower, then one index search and exact re-scoring for the whole batch."""
        ann, k = self.ann, self.state.top_k
        if ann is None:
            return runtime_infer

        def infer(t: Tensors) -> Tensors:
            # OpenMP's thread count is per calling thread: set it in the thread that searches (the batch worker),
            # not only where the version was loaded; 2 threads on a loaded 2-core box spin and multiply p99
            set_threads(1)
            out = runtime_infer({"history": t["history"]})
            ids, scores = ann.search(out["user"], out["repeat"], t["history"], t["exclude"], k)
            return {"item_ids": ids, "scores": scores}

        return infer

    def unavailable_ids(self) -> np.ndarray:
        """Catalogue indices marked unavailable (re-mapped only when the set changed)."""
        if self.avail is None:
            return self._unavailable[1]
        items = self.avail.unavailable()
        if items is not self._unavailable[0]:
            got = self.ids.indices(list(items))
            ids = np.unique(got[got > 0])
            self._unavailable = (items, ids)
        return self._unavailable[1]

    def exclusions(self, row: dict[str, Any], stored: list[Event] | None, unavailable: np.ndarray) -> np.ndarray:
        """Every item this row must never return, one source per line."""
        sources: list[Any] = [row["exclude"], unavailable, self.retired]
        has_seen = self.state.exclude_seen
        if (row["exclude_purchased"] or has_seen) and stored is not None:
            got = self.ids.indices(list(purchased(stored)))
            sources.append(got[got > 0])
        if has_seen:  # the catalogue's rule: the whole known history, not only the store's recent items
            sources += [self.seen.of(row["user_id"]), row["history"] or []]
        return np.concatenate([np.asarray(x, np.int64) for x in sources])

    @classmethod
    def compare(cls, reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> Comparison:
        """Overlap of the two top-10 lists."""
        overlap = overlap_at([i["item_id"] for i in reference["items"]], [i["item_id"] for i in candidate["items"]])
        return Comparison(overlap, {"overlap_at_10": overlap})

    # ---- request side (event loop) ----
    def validate(self, req: RecommendRequest) -> tuple[dict[str, Any], list[str]]:
        s = self.state
        if req.user_id is None and req.history is None:
            raise InvalidInput("send a user_id, a history, or both", code="missing_history", status=422)
        if req.k > s.top_k:
            raise InvalidInput(f"k={req.k}: this version returns at most {s.top_k}", code="k_too_large", status=422)
        if len(req.exclude) > s.max_exclude:
            raise InvalidInput(
                f"{len(req.exclude)} exclude ids; at most {s.max_exclude}", code="too_many_excludes", status=422
            )
        known = self.readable
        at = self.ids.indices(req.history or [])
        readable = (at > 0) & (at < known)
        unknown = [i for i, ok in zip(req.history or [], readable.tolist(), strict=True) if not ok]
        ex = self.ids.indices(req.exclude)
        unknown += [i for i, j in zip(req.exclude, ex.tolist(), strict=True) if j <= 0]
        row = {
            "user_id": req.user_id,
            "history": None if req.history is None else at[readable].tolist(),
            "exclude": ex[ex > 0].tolist(),
            "exclude_purchased": req.exclude_purchased,
        }
        return row, unknown[:100]

    def items_out(self, ids: np.ndarray, scores: np.ndarray, k: int) -> list[dict[str, Any]]:
        out = []
        for i, sc in zip(ids.tolist(), scores.tolist(), strict=True):
            if i <= 0 or i >= len(self.ids) or sc < -1e8:  # padding / excluded: catalogue exhausted
                continue
            out.append({"item_id": self.ids[i], "score": float(sc), "title": self.titles[i]})
            if len(out) == k:
                break
        return out

    # ---- batch side (worker thread) ----
    def prepare(self, rows: list[Any]) -> Tensors:
        need = [
            i
            for i, r in enumerate(rows)
            if r["user_id"] is not None and (r["history"] is None or r["exclude_purchased"] or self.state.exclude_seen)
        ]
        stored: dict[int, list[Event]] = {}
        degraded = np.zeros(len(rows), bool)
        if need:
            read_ns = time.time_ns() if tracing.ENABLED else 0
            try:
                for i, h in zip(need, self.store.histories([rows[i]["user_id"] for i in need]), strict=True):
                    stored[i] = h
                if tracing.ENABLED:
                    tracing.batch_child("feature_store.read", read_ns, backend=self.store.backend, users=len(need))
            except StoreUnavailable as err:
                if tracing.ENABLED:
                    tracing.batch_child("feature_store.read", read_ns, backend=self.store.backend, error=str(err))
                LOG.warning("feature store unavailable for %d rows: %s", len(need), err)
                degraded[need] = True
                self.metrics.degraded.labels("unavailable").inc(len(need))
        L = self.state.history_len
        hist = np.zeros((len(rows), L), np.int64)
        excl_rows: list[np.ndarray] = []
        unavailable = self.unavailable_ids()
        source = np.zeros(len(rows), np.int64)
        used = np.zeros(len(rows), np.int64)
        for i, r in enumerate(rows):
            if r["history"] is not None:
                seq, source[i] = r["history"], 0
            elif i in stored:
                at = self.ids.indices([e.item_id for e in stored[i]])
                seq = at[(at > 0) & (at < self.readable)].tolist()
                source[i] = 1 if seq else 2
            else:
                seq, source[i] = [], 2
            seq = seq[:L]
            hist[i, : len(seq)] = seq
            used[i] = len(seq)
            excl_rows.append(self.exclusions(r, stored.get(i), unavailable))
        width = max(1, max(len(x) for x in excl_rows))
        exclude = np.zeros((len(rows), width), np.int64)
        for i, x in enumerate(excl_rows):
            exclude[i, : len(x)] = x
        return {"history": hist, "exclude": exclude, "_degraded": degraded, "_source": source, "_used": used}

    def warmup(self) -> None:
        self.prepare([{"user_id": None, "history": [], "exclude": [], "exclude_purchased": False}])


TASK = RecommendTask
