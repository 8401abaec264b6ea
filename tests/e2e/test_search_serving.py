"""``POST /v1/search/rank`` on a real uvicorn server, serving the ranker the real compress pipeline published.

Queries are the held-out test queries of the same seeded query split (never seen in training); their judged
products are the candidates, sent by id (the version's catalogue) or with their text.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
from collections.abc import Iterator

import numpy as np
import pytest

from app.manifest import Manifest
from app.repository import list_versions
from compress.search.config import SearchConfig
from compress.search.data import Judged, SearchData, read_judgments, split_queries
from compress.search.metrics import ndcg_at_k
from tests.fixtures.compress_run import CompressRun
from tests.fixtures.servers import ServerProcess, serving

MODEL = "search-ranker"


@pytest.fixture(scope="module")
def judged(search_config: SearchConfig) -> tuple[SearchData, list[Judged]]:
    data = read_judgments(search_config.data)
    split = split_queries(len(data.lists), search_config.split)
    return data, [data.lists[i] for i in split.test]


@pytest.fixture(scope="module")
def server(search_compress_run: CompressRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real ``python -m app`` for the module (the tests only read from it)."""
    yield from _serve(search_compress_run, tmp_path_factory)


@pytest.fixture(scope="module")
def bi_server(search_bi_compress_run: CompressRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server of the bi-encoder version (query encoder + stored INT8 product vectors)."""
    yield from _serve(search_bi_compress_run, tmp_path_factory)


def _serve(run: CompressRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # a 50-pair item is tens of ms of CPU: the 25 ms default queue budget would refuse concurrent requests
    env = {"APP_REQUIRED_MODELS": MODEL, "APP_QUEUE_BUDGETS_MS": json.dumps({MODEL: 5000})}
    with serving(
        run.repo, tmp_path_factory.mktemp("search-server"), env, until="/v2/health/ready", timeout_s=120
    ) as srv:
        yield srv


def _manifest(run: CompressRun) -> Manifest:
    version = list_versions(run.repo, MODEL)[-1]
    return Manifest.model_validate(json.loads((run.repo / MODEL / str(version) / "manifest.json").read_text()))


def test_served_rankings_of_held_out_queries_reproduce_the_offline_ndcg(
    search_compress_run: CompressRun, server: ServerProcess, judged: tuple[SearchData, list[Judged]]
) -> None:
    _reproduces_offline_ndcg(search_compress_run, server, judged[1])


def test_bi_encoder_served_rankings_reproduce_the_offline_ndcg(
    search_bi_compress_run: CompressRun, bi_server: ServerProcess, judged: tuple[SearchData, list[Judged]]
) -> None:
    _reproduces_offline_ndcg(search_bi_compress_run, bi_server, judged[1])


def _reproduces_offline_ndcg(run: CompressRun, server: ServerProcess, lists: list[Judged]) -> None:
    manifest = _manifest(run)
    ndcgs = []
    for j in lists:
        r = server.post(
            "/v1/search/rank", json={"query": j.query, "candidates": [{"product_id": p} for p in j.products]}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == MODEL and body["version"] == manifest.version
        res = body["results"]
        assert [x["rank"] for x in res] == list(range(1, len(j.products) + 1))
        assert sorted(x["product_id"] for x in res) == sorted(j.products)
        assert all(a["score"] >= b["score"] for a, b in zip(res, res[1:], strict=False)), [r["score"] for r in res]
        by_id = {x["product_id"]: x["score"] for x in res}
        ndcgs.append(ndcg_at_k(np.array([by_id[p] for p in j.products]), j.gains, 10))
    offline = manifest.metrics["candidate"]["ndcg_10"]
    assert abs(float(np.mean(ndcgs)) - offline) < 0.01, (np.mean(ndcgs), offline)


def test_id_only_and_inline_text_candidates_get_the_same_scores(
    server: ServerProcess, judged: tuple[SearchData, list[Judged]]
) -> None:
    _id_only_equals_inline(server, judged, 1e-5)


def test_bi_encoder_id_only_and_inline_text_candidates_get_the_same_scores(
    bi_server: ServerProcess, judged: tuple[SearchData, list[Judged]]
) -> None:
    """Vectors stored at publish time vs encoded in the request: equal up to INT8 rounding of float noise."""
    _id_only_equals_inline(bi_server, judged, 1e-3)


def _id_only_equals_inline(server: ServerProcess, judged: tuple[SearchData, list[Judged]], tol: float) -> None:
    data, lists = judged
    j = lists[0]
    ids = j.products[:8]
    by_id = server.post("/v1/search/rank", json={"query": j.query, "candidates": [{"product_id": p} for p in ids]})
    inline = [{"product_id": p, **data.catalogue[p]} for p in ids]
    with_text = server.post("/v1/search/rank", json={"query": j.query, "candidates": inline})
    assert by_id.status_code == with_text.status_code == 200, with_text.text
    a = {x["product_id"]: x["score"] for x in by_id.json()["results"]}
    b = {x["product_id"]: x["score"] for x in with_text.json()["results"]}
    assert a.keys() == b.keys() and all(abs(a[p] - b[p]) < tol for p in a), (a, b)
    # a product outside the catalogue, carrying the same text, scores as the catalogue product in the same batch
    mixed = [{"product_id": ids[0]}, {"product_id": "not-in-catalogue", **data.catalogue[ids[0]]}]
    res = server.post("/v1/search/rank", json={"query": j.query, "candidates": mixed, "k": 2}).json()["results"]
    assert abs(res[0]["score"] - res[1]["score"]) < tol


def test_top_k_and_truncation_flags(server: ServerProcess, judged: tuple[SearchData, list[Judged]]) -> None:
    j = judged[1][0]
    long_query = " ".join([j.query] * 8)[:190]
    body = server.post(
        "/v1/search/rank", json={"query": long_query, "k": 3, "candidates": [{"product_id": p} for p in j.products]}
    ).json()
    assert len(body["results"]) == 3 and body["query_truncated"] is True
    body = server.post(
        "/v1/search/rank",
        json={
            "query": "towel",
            "candidates": [{"product_id": "short", "title": "Towel"}, {"product_id": "long", "title": "Towel " * 200}],
        },
    ).json()
    flags = {x["product_id"]: x["truncated"] for x in body["results"]}
    assert flags == {"short": False, "long": True} and body["query_truncated"] is False


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"query": "", "candidates": [{"product_id": "x", "title": "t"}]}', 422, "empty_query"),
        (b'{"query": "towel", "candidates": []}', 422, "invalid_request"),
        (b'{"query": "towel", "candidates": [{"product_id": "no-such-product"}]}', 422, "unknown_product"),
        (b'{"query": "towel", "candidates": [{"product_id": "x", "price": 3}]}', 422, "unknown_field"),
        (b'{"query": "towel", "candidates": [{"product_id": "x", "title": 3}]}', 422, "invalid_field"),
        (b'{"query": "towel", "candidates": [{"product_id": "x", "title": " "}]}', 422, "empty_product_text"),
        (
            b'{"query": "towel", "candidates": [{"product_id": "x", "title": "a"}, {"product_id": "x", "title": "b"}]}',
            422,
            "duplicate_product",
        ),
        (b'{"query": 42, "candidates": [{"product_id": "x", "title": "t"}]}', 422, "invalid_request"),
        (b'{"query": "towel", "candidates": [{"product_id": "x", "title": "t"}], "k": 0}', 422, "invalid_request"),
        (b'{"query": "towel"', 400, "invalid_json"),
        (b'{"query": "\xff towel", "candidates": []}', 400, "invalid_utf8"),
        (
            ('{"query": "' + "x" * 500 + '", "candidates": [{"product_id": "x", "title": "t"}]}').encode(),
            413,
            "query_too_long",
        ),
        (
            ('{"query": "towel", "candidates": [{"product_id": "x", "title": "' + "x" * 30000 + '"}]}').encode(),
            413,
            "product_text_too_long",
        ),
        (  # the search limit (APP_MAX_CANDIDATES_TASKS), below the CTR one: 1,000 texts ran past the deadline
            json.dumps(
                {"query": "towel", "candidates": [{"product_id": f"p{i}", "title": "bath towel"} for i in range(201)]}
            ).encode(),
            413,
            "too_many_candidates",
        ),
    ],
)
def test_bad_input_gets_a_coded_4xx_and_good_requests_alongside_succeed(
    server: ServerProcess, judged: tuple[SearchData, list[Judged]], body: bytes, status: int, code: str
) -> None:
    j = judged[1][1]
    good = {"query": j.query, "candidates": [{"product_id": p} for p in j.products]}
    with cf.ThreadPoolExecutor(8) as pool:
        goods = [pool.submit(server.post, "/v1/search/rank", json=good) for _ in range(6)]
        bad = server.post("/v1/search/rank", content=body, headers={"content-type": "application/json"})
        answers = [f.result() for f in goods]
        assert all(r.status_code == 200 for r in answers), [(r.status_code, r.text[:300]) for r in answers]
    assert bad.status_code == status, bad.text
    assert bad.json()["error"]["code"] == code
