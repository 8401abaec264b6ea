"""``POST /v1/ads/ctr``: score ad candidates for one impression (task ``ctr-v1``).

Each candidate row = ``context`` overlaid by the candidate's ``features``; all candidates of a request are ONE
batcher item of N rows. With featurization inside the graph (``model_raw.onnx``, the default) the request's two
raw arrays are built and checked on arrival, straight from the candidates (no dict per row); with the Python
featurizer the merged rows are featurized per batch in the worker thread by the version's own
:class:`CtrFeaturizer` (the code path training used). Scores come back in candidate order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from app.errors import InvalidInput, PayloadTooLarge, names_hint
from app.rollout.compare import PCTR_TOLERANCE, Comparison, spearman
from app.tasks.base import Call, InferFn, Route, Task, TaskContext, Tensors, VersionFiles, spread
from app.tasks.ctr.columns import column_arrays, column_rows, parse_body
from app.tasks.ctr.features import KIND, FeatureError, dense_value
from app.tasks.ctr.raw import CAT_RAW, RAW_MODEL_ROLE, Featurizer, raw_arrays, request_arrays
from app.tasks.ctr.schemas import CtrColumnsRequest, CtrRequest, CtrResponse
from app.tasks.ctr.vocab import load_featurizer

LOG = logging.getLogger(__name__)
_MAX_INT = 1 << 1000  # far inside float range; larger ints go through the featurizer's check (and fail there)


def merge_rows(req: CtrRequest, known: frozenset[str], dense: frozenset[str]) -> list[dict[str, Any]]:
    """One row per candidate: context overlaid by the candidate's own fields; unknown names and values refused."""
    check_fields(req.context, known, dense, "context")
    rows = []
    for i, cand in enumerate(req.candidates):
        check_fields(cand.features, known, dense, f"candidates[{i}].features")
        rows.append({**req.context, **cand.features} if req.context and cand.features else cand.features or req.context)
    return rows


def check_fields(fields: Mapping[str, Any], known: frozenset[str], dense: frozenset[str], where: str) -> None:
    """Refuse unknown names, non-scalars, and dense values the featurizer would reject, before batching.

    One pass per request part; anything unusual is judged by the featurizer's own ``dense_value``.
    """
    if not known.issuperset(fields):
        unknown = sorted(set(fields) - known)[:10]
        hint = names_hint(unknown, known, "valid features")
        raise InvalidInput(f"{where}: unknown features {unknown}; {hint}", code="unknown_feature", status=422)
    for name, value in fields.items():
        kind = type(value)
        if kind is str or (kind is int and not -_MAX_INT < value < _MAX_INT):
            if name in dense:
                _check_dense(value, name, where)
        elif kind is float:
            if name in dense and not math.isfinite(value):
                _check_dense(value, name, where)
        elif kind is not int and value is not None:  # bool, list, dict: the featurizer would take them silently
            raise InvalidInput(f"{where}.{name}: {value!r} is not a scalar", code="invalid_feature", status=422)


def _check_dense(value: Any, name: str, where: str) -> None:
    try:
        dense_value(value, name)
    except FeatureError as e:
        raise InvalidInput(f"{where}: {e}", code="invalid_feature", status=422) from None


async def score(req: CtrRequest | CtrColumnsRequest, call: Call[CtrTask]) -> dict[str, Any]:
    task = call.task
    ids = req.ad_ids if isinstance(req, CtrColumnsRequest) else [c.ad_id for c in req.candidates]
    n = len(ids)
    if n == 0:
        field = "ad_ids" if isinstance(req, CtrColumnsRequest) else "candidates"
        raise InvalidInput(f"'{field}' must not be empty", code="invalid_request", status=422)
    limit = call.ctx.settings.max_candidates_for(task.name)
    if n > limit:
        raise PayloadTooLarge(
            f"{n} candidates; at most {limit} per request (setting APP_MAX_CANDIDATES)", code="too_many_candidates"
        )
    tensors = task.request_tensors(req)  # graph mode: this request's arrays, checked here
    if tensors is None:
        outputs = await call.submit(task.rows(req))
    else:
        outputs = await call.submit_tensors(tensors, n)
    pctr = outputs[task.output].reshape(-1).tolist()
    scores = [{"ad_id": a, "pctr": p} for a, p in zip(ids, pctr, strict=True)]
    return {"model": call.model, "version": call.version, "scores": scores}


_EXAMPLE = {
    "context": {"I1": 1, "C1": "68fd1e64"},
    "candidates": [{"ad_id": "a1", "features": {"C3": "fb936136", "I5": 1382}}, {"ad_id": "a2", "features": {}}],
}
_COLUMNS_EXAMPLE = {
    "context": {"I1": 1, "C1": "68fd1e64"},
    "ad_ids": ["a1", "a2"],
    "columns": {"C3": ["fb936136", None], "I5": [1382, None]},
}


class CtrTask(Task):
    """The version's featurizer, the names it accepts, its score output, and (graph mode) the fused raw model."""

    kind = KIND
    name = "ctr"
    default_model = "ad-ctr"
    routes = (
        Route(
            "/v1/ads/ctr",
            "ctr",
            CtrRequest,
            CtrResponse,
            score,
            summary="Score ad candidates (click-through probability)",
            description="Each candidate row is `context` overlaid by the candidate's `features` (raw log fields: "
            "ints, category strings, null = missing). Unknown feature names are refused (422), unseen category "
            "values use the model's rare bucket. Scores come back in candidate order. The same request may come in "
            "columns (`ad_ids` plus `columns`: field name -> one value per candidate, null = missing), which is "
            "cheaper to send and to read for many candidates; both bodies get the same scores.",
            examples={"two candidates": _EXAMPLE, "two candidates in columns": _COLUMNS_EXAMPLE},
            response_example={
                "model": "ad-ctr",
                "version": 2,
                "scores": [{"ad_id": "a1", "pctr": 0.0412}, {"ad_id": "a2", "pctr": 0.2231}],
            },
            errors={
                400: "invalid_json, invalid_header",
                413: "payload_too_large, too_many_candidates",
                422: "invalid_request, unknown_feature, invalid_feature",
            },
            parser=parse_body,
            alternatives=(CtrColumnsRequest,),
        ),
    )

    def __init__(self, featurizer: Featurizer, output: str, raw_session: Any = None) -> None:
        self.featurizer = featurizer
        self.output = output
        self.dense = frozenset(featurizer.dense_columns)
        self.known = self.dense.union(featurizer.categorical_columns)
        self.raw_session = raw_session
        """ORT session of ``model_raw.onnx`` (featurization inside the graph), or None: Python featurizer."""
        self.inputs = frozenset(("dense", "sparse"))
        """Model inputs the version declares (an all-categorical or all-numeric log has only one)."""

    @classmethod
    def load(cls, files: VersionFiles, ctx: TaskContext) -> CtrTask:
        featurizer = load_featurizer(files.state())  # the project's fitted state, or an imported model's vocabularies
        output = files.manifest.outputs[0].name
        if ctx.settings.ctr_featurize != "graph" or not files.has(RAW_MODEL_ROLE):
            task = cls(featurizer, output)
            task.inputs = frozenset(s.name for s in files.manifest.inputs)
            return task
        from app.runtime.ort_options import cpu_session

        session = cpu_session(
            files.aux(RAW_MODEL_ROLE),
            intra_op_threads=ctx.settings.ort_intra_op_threads,
            inter_op_threads=ctx.settings.ort_inter_op_threads,
            allow_spinning=ctx.settings.ort_allow_spinning,
        )  # string lookups run on the CPU
        return cls(featurizer, output, session)

    @classmethod
    def compare(cls, reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> Comparison:
        """Absolute pCTR difference per candidate (agreement: the share within ``PCTR_TOLERANCE``) and whether
        the candidates' order changes (rank correlation)."""
        ref = [s["pctr"] for s in reference["scores"]]
        cand = [s["pctr"] for s in candidate["scores"]]
        diffs = np.abs(np.asarray(ref, np.float64) - np.asarray(cand, np.float64))
        return Comparison(
            float(np.mean(diffs <= PCTR_TOLERANCE)),
            {"pctr_abs_diff": float(diffs.mean()), "rank_corr": spearman(ref, cand)},
        )

    @property
    def mode(self) -> str:
        return "graph" if self.raw_session is not None else "python"

    def prepare(self, rows: list[Any]) -> Tensors:
        try:
            if self.raw_session is not None:
                return raw_arrays(rows, self.featurizer)
            tensors = self.featurizer.transform_records(rows)
            return (
                tensors if len(self.inputs) == len(tensors) else {k: v for k, v in tensors.items() if k in self.inputs}
            )
        except (ValueError, TypeError, ArithmeticError) as e:  # FeatureError is a ValueError
            raise InvalidInput(str(e), code="invalid_feature", status=422) from None

    def rows(self, req: CtrRequest | CtrColumnsRequest) -> list[Any]:
        """Python featurizer: the request's checked rows (context overlaid by each candidate's fields)."""
        if isinstance(req, CtrRequest):
            return merge_rows(req, self.known, self.dense)
        check_fields(req.context, self.known, self.dense, "context")
        column_arrays(req, self.featurizer, self.known)  # refuses what the graph path refuses, alike
        return column_rows(req)

    def request_tensors(self, req: CtrRequest | CtrColumnsRequest) -> Tensors | None:
        """Graph mode: one request's raw arrays, built and checked here rather than per batch, or None for the
        per-row path (Python featurizer). A columnar body is converted column by column.

        Plain requests (known names, JSON numbers or null in dense fields, scalars elsewhere) skip the row dicts;
        any other request goes through :func:`merge_rows`, which refuses what must be refused with its message.
        """
        if self.raw_session is None:
            return None
        if req.context:
            check_fields(req.context, self.known, self.dense, "context")
        if isinstance(req, CtrColumnsRequest):
            return column_arrays(req, self.featurizer, self.known)
        features = [c.features for c in req.candidates]
        known = self.known
        if all(map(known.issuperset, features)):
            try:
                fast = request_arrays(req.context, features, self.featurizer)
            except (ValueError, TypeError, ArithmeticError) as e:  # as prepare: e.g. an int too long for str()
                raise InvalidInput(str(e), code="invalid_feature", status=422) from None
            if fast is not None:
                return fast
        return self.prepare(merge_rows(req, known, self.dense))

    def infer_fn(self, runtime_infer: InferFn) -> InferFn:
        session = self.raw_session
        if session is None:
            return runtime_infer
        names = [self.output]

        def run(feeds: Tensors) -> Tensors:
            if CAT_RAW not in feeds:  # model tensors (KServe v2 callers share this version's batcher)
                return runtime_infer(feeds)
            return dict(zip(names, session.run(names, feeds), strict=True))

        return run

    def drift_rows(
        self, req: CtrRequest | CtrColumnsRequest, result: Mapping[str, Any], limit: int
    ) -> list[Mapping[str, Any]]:
        """Raw fields of a few candidate rows (context overlaid by the candidate's) and their ``pctr``."""
        scores, ctx = result["scores"], req.context
        picked = spread(len(scores), limit)
        if isinstance(req, CtrColumnsRequest):
            cols = req.columns.items()
            return [{**ctx, **{c: v[i] for c, v in cols}, "pctr": scores[i]["pctr"]} for i in picked]
        return [{**ctx, **req.candidates[i].features, "pctr": scores[i]["pctr"]} for i in picked]

    def warmup(self) -> None:
        feeds = self.prepare([{}])
        if self.raw_session is not None:
            self.infer_fn(lambda f: f)(feeds)
        LOG.info("CTR featurization: %s", "inside model_raw.onnx" if self.raw_session is not None else "Python")

    def close(self) -> None:
        self.raw_session = None


TASK = CtrTask
