"""The recommendation and search task RPCs (``shopinfer.v1.TaskService``: Recommend, RecordEvent, RankSearch) on
one real server (``python -m app``) serving both models the real compress pipelines published (the session
fixtures of tests/e2e/test_rec_serving.py and test_search_serving.py): each RPC answers what its REST twin
answers for the same request, and bad input gets the REST route's code under the mapped gRPC status."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from app.grpc.generated.shopinfer.v1 import tasks_pb2, tasks_pb2_grpc
from app.grpc.task_messages import encode_rank_search, encode_recommend, recommend_request
from compress.search.config import SearchConfig
from compress.search.data import Judged, SearchData, read_judgments, split_queries
from tests.fixtures.compress_run import CompressRun
from tests.fixtures.servers import ServerProcess, serving

SEARCH = "search-ranker"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def both(rec_compress_run: CompressRun, search_compress_run: CompressRun,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:  # fmt: skip
    """One server, one worker, with the session's recommend and search models copied into one repository."""
    rec = rec_compress_run.cfg.model.name
    root = tmp_path_factory.mktemp("grpc-tasks")
    repo = root / "repo"
    shutil.copytree(rec_compress_run.repo / rec, repo / rec)
    shutil.copytree(search_compress_run.repo / SEARCH, repo / SEARCH)
    # the in-process feature store (no REDIS_URL), seeded from the version's histories
    env = {"APP_WORKERS": "1", "APP_REQUIRED_MODELS": f"{rec},{SEARCH}", "APP_TASK_MODELS": json.dumps({"recommend": rec}),
           "APP_QUEUE_BUDGETS_MS": json.dumps({SEARCH: 5000})}  # a 50-pair item is tens of ms of CPU  # fmt: skip
    with serving(repo, root, env, until="/v2/health/ready", timeout_s=120) as server:
        yield server, rec


@pytest.fixture(scope="module")
def stub(both: tuple[ServerProcess, str]) -> Iterator[tasks_pb2_grpc.TaskServiceStub]:
    with grpc.insecure_channel(both[0].grpc_target) as channel:
        yield tasks_pb2_grpc.TaskServiceStub(channel)


@pytest.fixture(scope="module")
def judged(search_config: SearchConfig) -> tuple[SearchData, list[Judged]]:
    """The held-out test queries of the pipeline's own query split, with the catalogue's text fields."""
    data = read_judgments(search_config.data)
    return data, [data.lists[i] for i in split_queries(len(data.lists), search_config.split).test]


def _rest(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = server.post(path, json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _refused(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    """(status, machine-readable code) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=30)
    return err.value.code(), dict(err.value.trailing_metadata() or ())["shopinfer-error-code"]


def test_recommend_rpc_answers_like_the_rest_route_and_maps_its_errors(
    both: tuple[ServerProcess, str], stub: tasks_pb2_grpc.TaskServiceStub, rec_test_users: dict[str, list[str]]
) -> None:
    server, rec = both
    popular = _rest(server, "/v1/recommend", {"history": [], "k": 20})  # an empty session: popularity
    assert popular["history_source"] == "request" and popular["history_used"] == 0
    known = [it["item_id"] for it in popular["items"]]
    bodies: list[dict[str, Any]] = [{"user_id": u, "k": 10} for u in sorted(rec_test_users)[:4]]
    bodies += [{"history": [*known[:3], "NOPE-1"], "k": 5, "exclude": [known[5], "NOPE-2"]},
               {"history": [], "k": 20}, {"user_id": "grpc-nobody", "k": 3, "exclude_purchased": True}]  # fmt: skip
    for body in bodies:
        http = _rest(server, "/v1/recommend", body)
        resp = stub.Recommend(encode_recommend(body), timeout=30)
        assert (resp.model, resp.version) == (http["model"], http["version"]) and resp.model == rec
        assert [(it.item_id, it.title) for it in resp.items] == [(it["item_id"], it["title"]) for it in http["items"]]
        assert [it.score for it in resp.items] == pytest.approx([it["score"] for it in http["items"]], abs=1e-6)
        assert (resp.history_source, resp.history_used, resp.degraded, list(resp.unknown_items)) == (
            http["history_source"], http["history_used"], http["degraded"], http["unknown_items"])  # fmt: skip
        assert len(resp.items) == body["k"]
    session = stub.Recommend(encode_recommend(bodies[4]), timeout=30)
    assert list(session.unknown_items) == ["NOPE-1", "NOPE-2"] and session.history_used == 3
    assert known[5] not in {it.item_id for it in session.items}
    assert stub.Recommend(encode_recommend(bodies[0]), timeout=30).history_source == "store"

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases = [
        (tasks_pb2.RecommendRequest(k=5), "missing_history"),
        (tasks_pb2.RecommendRequest(user_id="u", k=101), "invalid_request"),  # the schema's bound
        (tasks_pb2.RecommendRequest(user_id="u", k=0), "invalid_request"),  # set to 0: refused, not the default
        (tasks_pb2.RecommendRequest(user_id="u", exclude=[f"x{i}" for i in range(201)]), "too_many_excludes"),
    ]
    for request, code in cases:
        assert _refused(stub.Recommend, request) == (invalid, code)
        rest = server.post("/v1/recommend", json=recommend_request(request))
        assert rest.status_code == 422 and rest.json()["error"]["code"] == code, (rest.status_code, rest.text)
    assert _counted(server, "grpc_recommend")


def _counted(server: ServerProcess, endpoint: str) -> bool:
    """The RPC's successful calls are counted under ``grpc_<REST endpoint>``."""
    metrics = server.get("/metrics").text
    return (
        re.search(rf'inference_requests_total\{{code="ok",endpoint="{endpoint}",[^}}]*\}} [1-9]', metrics) is not None
    )


def test_record_event_feeds_the_next_recommend(
    both: tuple[ServerProcess, str], stub: tasks_pb2_grpc.TaskServiceStub
) -> None:
    server, _ = both
    user = "grpc-shopper-1"
    cold = stub.Recommend(tasks_pb2.RecommendRequest(user_id=user, k=10), timeout=30)
    assert cold.history_source == "none" and cold.history_used == 0
    bought = cold.items[0].item_id
    ack = stub.RecordEvent(tasks_pb2.EventRequest(user_id=user, item_id=bought, type="purchase", ts=1.7e9), timeout=30)
    assert (ack.stored, ack.degraded, ack.backend) == (True, False, "memory")
    warm = stub.Recommend(tasks_pb2.RecommendRequest(user_id=user, k=10, exclude_purchased=True), timeout=30)
    assert warm.history_source == "store" and warm.history_used == 1
    assert bought not in {it.item_id for it in warm.items}
    # the REST route reads the same store: the gRPC event is visible there too
    assert _rest(server, "/v1/recommend", {"user_id": user, "k": 10})["history_used"] == 1
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert _refused(stub.RecordEvent, tasks_pb2.EventRequest(user_id=user, item_id=bought, type="like")) == (
        invalid,
        "invalid_request",
    )
    assert _refused(stub.RecordEvent, tasks_pb2.EventRequest(item_id=bought, type="view")) == (
        invalid,
        "invalid_request",
    )
    assert _counted(server, "grpc_events")


def test_rank_search_rpc_answers_like_the_rest_route_and_maps_its_errors(
    both: tuple[ServerProcess, str], stub: tasks_pb2_grpc.TaskServiceStub, judged: tuple[SearchData, list[Judged]]
) -> None:
    server, _ = both
    data, lists = judged
    for j in lists[:3]:
        inline = {"product_id": "not-in-catalogue", **data.catalogue[j.products[0]]}  # text fields, lists among them
        body = {"query": j.query, "candidates": [{"product_id": p} for p in j.products] + [inline]}
        http = _rest(server, "/v1/search/rank", body)
        resp = stub.RankSearch(encode_rank_search(body), timeout=30)
        assert (resp.model, resp.version, resp.query_truncated) == (
            http["model"],
            http["version"],
            http["query_truncated"],
        )
        assert [(r.product_id, r.rank, r.truncated) for r in resp.results] == [
            (r["product_id"], r["rank"], r["truncated"]) for r in http["results"]]  # fmt: skip
        assert [r.score for r in resp.results] == pytest.approx([r["score"] for r in http["results"]], abs=1e-5)
        by_id = {r.product_id: r.score for r in resp.results}
        assert by_id["not-in-catalogue"] == pytest.approx(by_id[j.products[0]], abs=1e-5)  # same text, same score
    top = stub.RankSearch(encode_rank_search({**body, "k": 2}), timeout=30)
    assert [r.product_id for r in top.results] == [r["product_id"] for r in http["results"][:2]]

    j = lists[0]
    ok = [tasks_pb2.SearchCandidate(product_id=j.products[0])]
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases = [
        (tasks_pb2.RankSearchRequest(query=" ", candidates=ok), invalid, "empty_query"),
        (tasks_pb2.RankSearchRequest(query="towel"), invalid, "invalid_request"),
        (tasks_pb2.RankSearchRequest(query="towel", candidates=ok, k=0), invalid, "invalid_request"),
        (tasks_pb2.RankSearchRequest(query="towel", candidates=[tasks_pb2.SearchCandidate(product_id="no-such")]),
         invalid, "unknown_product"),
        (tasks_pb2.RankSearchRequest(query="towel", candidates=[tasks_pb2.SearchCandidate(product_id="x", text={"price": "3"})]),
         invalid, "unknown_field"),
        (tasks_pb2.RankSearchRequest(query="towel", candidates=ok * 2), invalid, "duplicate_product"),
        (tasks_pb2.RankSearchRequest(query="towel", candidates=ok * 1001), invalid, "too_many_candidates"),  # 413
        (tasks_pb2.RankSearchRequest(query="x" * 500, candidates=ok), invalid, "query_too_long"),  # 413
        (tasks_pb2.RankSearchRequest(query="towel", candidates=ok, model_version=99), grpc.StatusCode.NOT_FOUND,
         "model_not_found"),
    ]  # fmt: skip
    for request, status, code in cases:
        assert _refused(stub.RankSearch, request) == (status, code), request.query
    with pytest.raises(grpc.RpcError) as err:  # the client's deadline passes before the work can run
        stub.RankSearch(encode_rank_search(body), timeout=0.0005)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _counted(server, "grpc_search")
