"""gRPC wire mapping without a server: stubs are current, tensors decode/encode like Triton's, errors map to the
right status codes, and tritonclient's own messages parse with our stubs (wire compatibility)."""

from __future__ import annotations

import filecmp
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2, status_pb2
from pydantic import SecretStr

from app.errors import (
    DeadlineExceeded,
    Forbidden,
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
)  # fmt: skip
from app.grpc import calls, status
from app.grpc.generated import grpc_service_pb2 as pb
from app.grpc.generated.shopinfer.v1 import tasks_pb2
from app.grpc.task_messages import (
    TASK_RPCS,
    chat_request,
    encode_rank_search,
    encode_recommend,
    encode_score_ads,
    event_request,
    features,
    rank_search_request,
    recommend_request,
    score_ads_request,
    validate,
)
from app.grpc.tensors import decode_infer_request, encode_infer_response
from app.tasks.recommend.schemas import EventRequest, RecommendRequest
from app.tasks.registry import all_routes
from app.tasks.search.schemas import SearchRequest

GENERATED = Path(__file__).resolve().parents[2] / "app" / "grpc" / "generated"


def test_checked_in_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) regenerates the stubs")
    from app.grpc.generate import generate

    written = generate(tmp_path)
    assert len(written) == 9
    for path in written:
        rel = path.relative_to(tmp_path)
        assert filecmp.cmp(path, GENERATED / rel, shallow=False), f"{rel} is stale: run python -m app.grpc.generate"


def _request(raw: bool) -> pb.ModelInferRequest:
    dense = np.arange(6, dtype=np.float32).reshape(2, 3)
    sparse = np.array([[1, -2], [3, 1 << 40]], dtype=np.int64)
    req = pb.ModelInferRequest(model_name="m", id="r1")
    req.parameters["priority"].int64_param = 1
    d = req.inputs.add(name="dense", datatype="FP32", shape=[2, 3])
    s = req.inputs.add(name="sparse", datatype="INT64", shape=[2, 2])
    if raw:
        req.raw_input_contents.extend([dense.tobytes(), sparse.tobytes()])
    else:
        d.contents.fp32_contents.extend(dense.ravel().tolist())
        s.contents.int64_contents.extend(sparse.ravel().tolist())
    req.outputs.add(name="pctr")
    return req


@pytest.mark.parametrize("raw", [True, False], ids=["raw_input_contents", "typed_contents"])
def test_infer_request_decodes_both_content_kinds_to_the_same_arrays(raw: bool) -> None:
    req = decode_infer_request(_request(raw))
    np.testing.assert_array_equal(req.inputs["dense"], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(req.inputs["sparse"], [[1, -2], [3, 1 << 40]])
    assert req.inputs["dense"].dtype == np.float32 and req.inputs["sparse"].dtype == np.int64
    assert req.datatypes == {"dense": "FP32", "sparse": "INT64"}
    assert req.parameters == {"priority": 1} and req.id == "r1"
    assert [o.name for o in req.outputs or []] == ["pctr"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.raw_input_contents.pop(), "send every input raw or none"),
        (lambda r: r.raw_input_contents.__setitem__(0, b"x" * 5), "raw bytes do not match shape"),
        (lambda r: setattr(r.inputs[0], "datatype", "BYTES"), "BYTES tensors are not supported"),
        (lambda r: setattr(r.inputs[0], "datatype", "FP8"), "unknown datatype"),
        (
            lambda r: r.inputs.add(name="dense", datatype="FP32", shape=[0]) and r.raw_input_contents.append(b""),
            "given twice",
        ),
    ],
)
def test_malformed_raw_requests_are_invalid_input(mutate: object, message: str) -> None:
    req = _request(raw=True)
    mutate(req)  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=message):
        decode_infer_request(req)


def test_typed_contents_must_fill_the_shape_and_use_the_datatypes_field() -> None:
    req = _request(raw=False)
    del req.inputs[0].contents.fp32_contents[-1]
    with pytest.raises(InvalidInput, match="5 values in contents.fp32_contents do not fill shape"):
        decode_infer_request(req)
    half = pb.ModelInferRequest(model_name="m")
    half.inputs.add(name="x", datatype="FP16", shape=[1]).contents.fp32_contents.append(1.0)
    with pytest.raises(InvalidInput, match="FP16 tensors must be sent in raw_input_contents"):
        decode_infer_request(half)


def test_response_is_raw_little_endian_in_requested_order() -> None:
    req = decode_infer_request(_request(raw=True))
    out = {"other": np.zeros((2, 1), np.int32), "pctr": np.array([[0.25], [0.5]], np.float32)}
    resp = encode_infer_response("m", 3, out, req)
    assert (resp.model_name, resp.model_version, resp.id) == ("m", "3", "r1")
    assert [(o.name, o.datatype, list(o.shape)) for o in resp.outputs] == [("pctr", "FP32", [2, 1])]
    np.testing.assert_array_equal(np.frombuffer(resp.raw_output_contents[0], "<f4"), [0.25, 0.5])


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InvalidInput("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (InvalidInput("x", code="unknown_feature", status=422), grpc.StatusCode.INVALID_ARGUMENT),
        (PayloadTooLarge("x", code="too_many_candidates"), grpc.StatusCode.INVALID_ARGUMENT),
        (ModelNotFound("x"), grpc.StatusCode.NOT_FOUND),
        (ModelNotReady("x"), grpc.StatusCode.UNAVAILABLE),
        (Overloaded("x", retry_after_s=0.25), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (Unauthorized("x"), grpc.StatusCode.UNAUTHENTICATED),
        (Forbidden("x"), grpc.StatusCode.PERMISSION_DENIED),
        (InferenceFailed("x"), grpc.StatusCode.INTERNAL),
        (ServiceError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_every_service_error_has_its_grpc_code(exc: ServiceError, code: grpc.StatusCode) -> None:
    assert status.grpc_code(exc) is code
    assert dict(status.trailers(exc))[status.ERROR_CODE_KEY] == exc.code


def test_overload_carries_retry_info_like_retry_after() -> None:
    meta = dict(status.trailers(Overloaded("queue full", retry_after_s=1.5)))
    assert meta[status.RETRY_AFTER_KEY] == "1500"
    rich = status_pb2.Status.FromString(meta["grpc-status-details-bin"])
    assert rich.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and rich.message == "queue full"
    info = error_details_pb2.RetryInfo()
    assert rich.details[0].Unpack(info)
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (1, 500_000_000)


def test_admin_rule_matches_http() -> None:
    with pytest.raises(Forbidden, match="disabled"):
        calls.require_admin(None, {"authorization": "Bearer t"})
    token = SecretStr("s3cret")
    with pytest.raises(Unauthorized):
        calls.require_admin(token, {})
    with pytest.raises(Forbidden, match="not valid"):
        calls.require_admin(token, {"authorization": "Bearer nope"})
    calls.require_admin(token, {"authorization": "bearer s3cret"})


def test_task_messages_become_the_rest_request_dicts() -> None:
    msg = tasks_pb2.ScoreAdsRequest(model_version=2, context=tasks_pb2.Features(ints={"I1": 3}))
    msg.candidates.add(ad_id="a", features=tasks_pb2.Features(strings={"C1": "68fd1e64"}, floats={"I2": 0.5}))
    msg.candidates.add(ad_id="b")
    assert score_ads_request(msg) == {
        "context": {"I1": 3}, "model_version": 2,
        "candidates": [{"ad_id": "a", "features": {"C1": "68fd1e64", "I2": 0.5}}, {"ad_id": "b", "features": {}}],
    }  # fmt: skip
    names = ["I1", "C1", "I2", "C2"]
    compact = tasks_pb2.ScoreAdsRequest(feature_names=names, model_version=2)
    compact.context.int_keys.append(0)
    compact.context.int_values.append(3)
    compact.candidates.add(ad_id="a", features=tasks_pb2.Features(string_keys=[1], string_values=["68fd1e64"],
                                                                   float_keys=[2], float_values=[0.5]))  # fmt: skip
    compact.candidates.add(ad_id="b")
    assert score_ads_request(compact) == score_ads_request(msg)  # both forms mean the same request
    rest = {
        "context": {"I1": 3},
        "model_version": 2,
        "candidates": [{"ad_id": "a", "features": {"C1": "68fd1e64", "I2": 0.5}}, {"ad_id": "b", "features": {}}],
    }
    assert score_ads_request(encode_score_ads(rest)) == rest  # the client helper round-trips a REST body
    mixed = tasks_pb2.Features(int_keys=[0], int_values=[-7], strings={"C2": "x"})
    assert features(mixed, names) == {"I1": -7, "C2": "x"}
    for bad, message in [
        (tasks_pb2.Features(int_keys=[0, 2], int_values=[1]), "int_keys has 2 entries but int_values 1"),
        (tasks_pb2.Features(string_keys=[9], string_values=["x"]), "not an index into the request's 4 feature_names"),
        (tasks_pb2.Features(int_keys=[0], int_values=[1], ints={"I1": 1}), "more than once"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            features(bad, names)
    assert chat_request(tasks_pb2.ChatRequest(message="hi")) == {"message": "hi", "model_version": None}
    assert chat_request(tasks_pb2.ChatRequest(message="hi", session_id=""))["session_id"] == ""
    with pytest.raises(InvalidInput, match="given more than once") as err:
        features(tasks_pb2.Features(ints={"I1": 1}, floats={"I1": 1.0}))
    assert err.value.code == "invalid_feature"


def test_every_task_route_has_an_rpc_in_the_proto() -> None:
    """The proto grows with the tasks: a route without a TaskService method (or a stale row) fails here."""
    service = tasks_pb2.DESCRIPTOR.services_by_name["TaskService"]
    assert sorted(r.path for r in all_routes()) == sorted(rpc.path for rpc in TASK_RPCS)
    assert {rpc.method for rpc in TASK_RPCS} == {m.name for m in service.methods}


def test_recommend_and_event_messages_keep_the_rest_semantics_of_unset_fields() -> None:
    session = tasks_pb2.RecommendRequest(history=tasks_pb2.ItemIds(ids=["85123A", "71053"]), k=5)
    assert recommend_request(session) == {"history": ["85123A", "71053"], "k": 5, "exclude": [],
                                          "exclude_purchased": False}  # fmt: skip
    # an empty history is JSON's [] (popularity for an anonymous session), an unset one is null
    empty = tasks_pb2.RecommendRequest()
    empty.history.SetInParent()
    assert recommend_request(empty)["history"] == []
    assert "history" not in recommend_request(tasks_pb2.RecommendRequest(user_id="12347"))
    assert validate(RecommendRequest, recommend_request(empty)).history == []  # type: ignore[attr-defined]
    req = validate(RecommendRequest, recommend_request(tasks_pb2.RecommendRequest(user_id="12347")))
    assert (req.user_id, req.history, req.k) == ("12347", None, 10)  # type: ignore[attr-defined]
    for doc in ({"user_id": "u1", "k": 3, "exclude": ["a"], "exclude_purchased": True}, {"history": [], "k": 1}):
        assert validate(RecommendRequest, recommend_request(encode_recommend(doc))) == RecommendRequest.model_validate(
            doc
        )
    for bad, where in [(tasks_pb2.RecommendRequest(user_id="u", k=0), "k"),  # set to 0: refused, not the default
                       (tasks_pb2.RecommendRequest(user_id=""), "user_id")]:  # fmt: skip
        with pytest.raises(InvalidInput, match=f"^{where}:") as err:
            validate(RecommendRequest, recommend_request(bad))
        assert (err.value.code, err.value.status) == ("invalid_request", 422)

    event = tasks_pb2.EventRequest(user_id="12347", item_id="85123A", type="purchase", ts=1.5)
    assert event_request(event) == {"user_id": "12347", "item_id": "85123A", "type": "purchase", "ts": 1.5}
    assert "ts" not in event_request(tasks_pb2.EventRequest(user_id="u", item_id="i", type="view"))
    with pytest.raises(InvalidInput, match="^type:") as err:
        validate(EventRequest, event_request(tasks_pb2.EventRequest(user_id="u", item_id="i", type="like")))
    assert err.value.code == "invalid_request"


def test_rank_search_message_is_the_json_body() -> None:
    body = {"query": "dish towels", "model_version": 2, "k": 1,
            "candidates": [{"product_id": "B07NCQWCQS"},
                           {"product_id": "sku-1", "title": "Cotton towels", "category": ["Home", "Kitchen"]}]}  # fmt: skip
    msg = encode_rank_search(body)
    assert dict(msg.candidates[1].text) == {"title": "Cotton towels"}
    assert list(msg.candidates[1].text_lists["category"].values) == ["Home", "Kitchen"]
    assert rank_search_request(msg) == body
    parsed = validate(SearchRequest, rank_search_request(msg))
    assert parsed.candidates[1].text_fields() == {"title": "Cotton towels", "category": ["Home", "Kitchen"]}  # type: ignore[attr-defined]
    unset = rank_search_request(tasks_pb2.RankSearchRequest(query="q"))
    assert unset == {"query": "q", "model_version": None, "candidates": []}  # k unset: every candidate, ranked
    twice = tasks_pb2.SearchCandidate(product_id="p", text={"title": "a"})
    twice.text_lists["title"].values.append("b")
    id_as_text = tasks_pb2.SearchCandidate(product_id="p", text={"product_id": "q"})
    for cand, code in [(twice, "invalid_field"), (id_as_text, "unknown_field")]:
        with pytest.raises(InvalidInput, match=r"candidates\[0\]") as err:
            rank_search_request(tasks_pb2.RankSearchRequest(query="q", candidates=[cand]))
        assert (err.value.code, err.value.status) == (code, 422)


def test_tritonclient_messages_parse_with_our_stubs_in_the_same_process() -> None:
    """Our descriptors live in a private pool, so tritonclient's `inference.*` messages can coexist with them."""
    service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")
    theirs = service_pb2.ModelInferRequest(model_name="ad-ctr", model_version="1", id="x")
    t = theirs.inputs.add(name="dense", datatype="FP32", shape=[1, 2])
    t.parameters["binary_data_size"].int64_param = 8
    theirs.raw_input_contents.append(np.array([1.5, 2.5], np.float32).tobytes())
    theirs.parameters["timeout"].int64_param = 5000
    ours = pb.ModelInferRequest.FromString(theirs.SerializeToString())
    req = decode_infer_request(ours)
    np.testing.assert_array_equal(req.inputs["dense"], [[1.5, 2.5]])
    assert req.parameters == {"timeout": 5000}
    back = service_pb2.ModelInferResponse.FromString(
        encode_infer_response("ad-ctr", 1, {"pctr": np.array([[0.5]], np.float32)}, req).SerializeToString()
    )
    assert back.model_version == "1" and np.frombuffer(back.raw_output_contents[0], "<f4")[0] == 0.5
