"""``POST /v1/search/rank``: rank a query's candidate products with the version's ranker (``search-v1``).

Cross-encoder versions (``mode = cross_encoder``): every (query, product) pair is one batcher row, so a
50-candidate request is one item of 50 rows; the worker thread assembles ``[CLS] query [SEP] product [SEP]`` per
row and pads to the batch's longest pair. Bi-encoder versions (``mode = bi_encoder``): the catalogue's product
vectors were computed at publish time and stored INT8 (``product_vectors``); a request is one row (its query)
plus one row per candidate sent with text, all encoded in the same item, and scores are dot products with the
INT8 vectors (sent products' vectors are quantised the same way, so id-only and inline candidates score alike).
Catalogue products may be sent by id alone. Products outside the catalogue must carry their text (422
``unknown_product`` otherwise); sent text is tokenised by the same function, so a product's score does not
depend on how it was sent. Bad input is refused before it reaches a batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from app.errors import InvalidInput, PayloadTooLarge
from app.rollout.compare import Comparison, ndcg_at, overlap_at
from app.tasks.base import Call, Route, Task, TaskContext, TaskLoadError, Tensors, VersionFiles
from app.tasks.search.schemas import SearchCandidate, SearchRequest, SearchResponse
from app.tasks.search.text import (
    BI,
    KIND,
    PairEncoder,
    SearchState,
    dot_scores,
    pad_pairs,
    product_text,
    quantize_rows,
    read_catalogue,
    read_vectors,
    single_seq,
)

TRUNCATED = "_truncated"
Row = tuple[list[int], list[int], bool]  # query tokens, product tokens, product text already cut


def _text_value(value: Any, where: str) -> None:
    """A text field is a string, a list of strings (a category path) or null."""
    if value is None or isinstance(value, str):
        return
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return
    raise InvalidInput(f"{where}: must be a string, a list of strings or null", code="invalid_field", status=422)


async def rank(req: SearchRequest, call: Call[SearchTask]) -> dict[str, Any]:
    task = call.task
    query = task.validate_query(req.query)
    n = len(req.candidates)
    if n == 0:
        raise InvalidInput("'candidates' must not be empty", code="invalid_request", status=422)
    limit = call.ctx.settings.max_candidates_for(SearchTask.name)  # sized to the text encoder, not the CTR limit
    if n > limit:
        raise PayloadTooLarge(
            f"{n} candidates; at most {limit} per request (setting APP_MAX_CANDIDATES)", code="too_many_candidates"
        )
    (q_tokens,), (q_cut,) = task.enc.queries([query])
    products, inline = task.candidate_products(req.candidates)
    if task.vectors is not None:
        scores, cut = await _bi_scores(task, call, q_tokens, products, inline, req.candidates)
    else:
        out = await call.submit([(q_tokens, p, c) for p, c in products])
        scores = out[task.output].reshape(-1).astype(np.float64)
        cut = out[TRUNCATED].reshape(-1)
    order = np.argsort(-scores, kind="stable")[: req.k]
    results = [
        {
            "product_id": req.candidates[i].product_id,
            "score": float(scores[i]),
            "rank": r + 1,
            "truncated": bool(cut[i]),
        }
        for r, i in enumerate(order.tolist())
    ]
    return {"results": results, "query_truncated": bool(q_cut), "model": call.model, "version": call.version}


async def _bi_scores(
    task: SearchTask,
    call: Call[SearchTask],
    q_tokens: list[int],
    products: list[tuple[list[int], bool]],
    inline: list[int],
    candidates: list[SearchCandidate],
) -> tuple[np.ndarray, np.ndarray]:
    """One item: the query row, then one row per inline product; catalogue products use the stored vectors."""
    assert task.vectors is not None
    ids, q8, scale = task.vectors
    rows = [(single_seq(q_tokens), False), *((single_seq(products[i][0]), products[i][1]) for i in inline)]
    emb = (await call.submit(rows))[task.output]
    query = emb[0]
    scores = np.zeros(len(candidates), np.float64)
    sent = set(inline)
    stored = [i for i in range(len(candidates)) if i not in sent]
    if stored:
        at = [ids[candidates[i].product_id] for i in stored]
        scores[stored] = dot_scores(query, q8[at], scale[at])
    if inline:
        sent8, sent_scale = quantize_rows(emb[1:])
        scores[inline] = dot_scores(query, sent8, sent_scale)
    return scores, np.array([c for _, c in products], np.bool_)


_EXAMPLE = {
    "query": "kitchen dish towels cotton",
    "candidates": [
        {"product_id": "B07NCQWCQS"},
        {"product_id": "my-sku-1", "title": "Cotton dish towels, set of 6", "brand": "Acme"},
    ],
    "k": 10,
}


class SearchTask(Task):
    """The version's pair encoder, its catalogue (pre-tokenised) and limits."""

    kind = KIND
    name = "search"
    default_model = "search-ranker"
    routes = (
        Route(
            "/v1/search/rank",
            "search",
            SearchRequest,
            SearchResponse,
            rank,
            summary="Rank candidate products for a shopping query",
            description="Scores every (query, candidate) pair with the version's ranker (a cross-encoder, or a "
            "bi-encoder: query vector . stored INT8 product vector) and returns the candidates by descending score (`rank` 1 = most relevant), the top `k` if given. Catalogue products "
            "may be sent by `product_id` alone; others must carry their text fields (`title`, `brand`, ...). "
            "Queries and product text longer than the version's token limits are truncated with a flag.",
            examples={"id-only and inline": _EXAMPLE},
            response_example={
                "results": [
                    {"product_id": "B07X", "score": 3.21, "rank": 1, "truncated": False},
                    {"product_id": "new-1", "score": -0.84, "rank": 2, "truncated": False},
                ],
                "query_truncated": False,
                "model": "search-ranker",
                "version": 2,
            },
            errors={
                400: "invalid_json, invalid_utf8, invalid_header",
                413: "payload_too_large, too_many_candidates, query_too_long, product_text_too_long",
                422: "invalid_request, empty_query, unknown_product, unknown_field, invalid_field, "
                "empty_product_text, duplicate_product",
            },
            utf8_check=True,
        ),
    )

    def __init__(
        self,
        state: SearchState,
        enc: PairEncoder,
        catalogue: dict[str, tuple[list[int], bool]],
        output: str,
        vectors: tuple[dict[str, int], np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.state, self.enc, self.catalogue, self.output = state, enc, catalogue, output
        self.fields = frozenset(state.text_fields)
        self.vectors = vectors
        """Bi-encoder versions: (product id -> row, INT8 vectors [N, D], scales [N]); None for a cross-encoder."""

    @classmethod
    def load(cls, files: VersionFiles, ctx: TaskContext) -> SearchTask:
        for role in ("preprocess", "tokenizer", "catalogue"):
            files.aux(role)
        state = SearchState.load(files.state())
        enc = PairEncoder.for_state(files.aux("tokenizer"), state)
        ids, texts = read_catalogue(files.aux("catalogue"), state.text_fields)
        tokens, cut = enc.products(texts)
        catalogue = dict(zip(ids, zip(tokens, cut, strict=True), strict=True))
        vectors = None
        if state.mode == BI:
            vec_ids, q8, scale = read_vectors(files.aux("product_vectors"))
            if set(vec_ids) != set(ids):
                raise TaskLoadError("product_vectors and catalogue list different products")
            vectors = ({p: i for i, p in enumerate(vec_ids)}, q8, scale)
        return cls(state, enc, catalogue, files.manifest.outputs[0].name, vectors)

    @classmethod
    def compare(cls, reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> Comparison:
        """Top-10 overlap, and NDCG@10 of the candidate's ranking with the reference's as relevance."""
        ref = [r["product_id"] for r in sorted(reference["results"], key=lambda r: r["rank"])]
        cand = [r["product_id"] for r in sorted(candidate["results"], key=lambda r: r["rank"])]
        overlap = overlap_at(ref, cand)
        return Comparison(overlap, {"overlap_at_10": overlap, "ndcg_at_10": ndcg_at(ref, cand)})

    def validate_query(self, query: str) -> str:
        q = query.strip()
        if not q:
            raise InvalidInput("query is empty or only whitespace", code="empty_query", status=422)
        if len(q) > self.state.max_query_chars:
            raise PayloadTooLarge(
                f"query has {len(q)} characters; the limit is {self.state.max_query_chars} (the version's [rank] "
                "max_query_chars)",
                code="query_too_long",
            )
        return q

    def product_rows(self, candidates: list[SearchCandidate]) -> list[tuple[list[int], bool]]:
        """(product tokens, text cut) per candidate: the catalogue's, or the sent text tokenised now."""
        return self.candidate_products(candidates)[0]

    def candidate_products(self, candidates: list[SearchCandidate]) -> tuple[list[tuple[list[int], bool]], list[int]]:
        """``product_rows`` and the indices of the candidates sent with text (checked; coded 4xx if bad)."""
        inline: dict[int, str] = {}
        seen: set[str] = set()
        for i, c in enumerate(candidates):
            if c.product_id in seen:
                raise InvalidInput(
                    f"candidates[{i}]: product_id {c.product_id!r} is sent twice", code="duplicate_product", status=422
                )
            seen.add(c.product_id)
            fields = c.text_fields()
            if not fields:
                if c.product_id not in self.catalogue:
                    raise InvalidInput(
                        f"candidates[{i}]: product {c.product_id!r} is not in the catalogue of this "
                        f"version; send its text ({', '.join(self.state.text_fields)})",
                        code="unknown_product",
                        status=422,
                    )
                continue
            unknown = sorted(set(fields) - self.fields)
            if unknown:
                raise InvalidInput(
                    f"candidates[{i}]: unknown fields {unknown[:10]}; text fields are {self.state.text_fields}",
                    code="unknown_field",
                    status=422,
                )
            for k, v in fields.items():
                _text_value(v, f"candidates[{i}].{k}")
            text = product_text(fields, self.state.text_fields)
            if not text:
                raise InvalidInput(
                    f"candidates[{i}]: the text fields are all empty", code="empty_product_text", status=422
                )
            if len(text) > self.state.max_text_chars:
                raise PayloadTooLarge(
                    f"candidates[{i}]: product text has {len(text)} characters; the limit is "
                    f"{self.state.max_text_chars} (the version's [rank] max_text_chars)",
                    code="product_text_too_long",
                )
            inline[i] = text
        sent = (
            dict(zip(inline, zip(*self.enc.products(list(inline.values())), strict=True), strict=True))
            if inline
            else {}
        )
        rows = [sent[i] if i in sent else self.catalogue[c.product_id] for i, c in enumerate(candidates)]
        return rows, list(inline)

    def prepare(self, rows: list[Any]) -> Tensors:
        if self.vectors is not None:  # bi-encoder rows: ([CLS] text [SEP], text cut)
            ids_, mask = pad_pairs([r[0] for r in rows])
            return {"input_ids": ids_, "attention_mask": mask, TRUNCATED: np.array([r[1] for r in rows], np.bool_)}
        pairs, cut = [], np.zeros(len(rows), np.bool_)
        for i, (q, p, was_cut) in enumerate(rows):
            ids, more = self.enc.pair(q, p)
            pairs.append(ids)
            cut[i] = was_cut or more
        ids_, mask = pad_pairs(pairs)
        return {"input_ids": ids_, "attention_mask": mask, TRUNCATED: cut}

    def warmup(self) -> None:
        self.prepare([(single_seq([1000]), False)] if self.vectors is not None else [([1000], [2000, 2001], False)])


TASK = SearchTask
