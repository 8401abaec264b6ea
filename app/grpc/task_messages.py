"""``shopinfer.v1`` messages <-> the task routes' request/response dicts: one :class:`TaskRpc` per REST route.

The request dict is validated by the route's own pydantic schema (so limits and 422 codes are the REST ones) and
run by ``InferenceService.run_task``; only the wire format differs. Add a row to :data:`TASK_RPCS` (and an RPC to
``protos/shopinfer/v1/tasks.proto``) when a task route is added.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from pydantic import BaseModel, ValidationError

from app.errors import InvalidInput
from app.grpc.generated.shopinfer.v1 import tasks_pb2 as pb


@dataclass(frozen=True)
class TaskRpc:
    """How one task route travels over gRPC."""

    method: str
    """RPC name in ``shopinfer.v1.TaskService``."""
    path: str
    """The REST route it mirrors (``Route.path``)."""
    to_request: Callable[[Any], dict[str, Any]]
    from_response: Callable[[dict[str, Any]], Message]


def features(msg: pb.Features, names: Sequence[str] = ()) -> dict[str, Any]:
    """One raw-field dict from the maps and/or the compact keyed lists (keys index ``names``); a name given twice
    is ambiguous and refused."""
    out: dict[str, Any] = {}
    given = 0
    for keys, values, kind in ((msg.int_keys, msg.int_values, "int"), (msg.float_keys, msg.float_values, "float"),
                               (msg.string_keys, msg.string_values, "string")):  # fmt: skip
        if not keys and not values:
            continue
        if len(keys) != len(values):
            raise InvalidInput(
                f"{kind}_keys has {len(keys)} entries but {kind}_values {len(values)}",
                code="invalid_feature",
                status=422,
            )
        try:
            out.update(zip([names[k] for k in keys], values, strict=True))
        except IndexError:
            raise InvalidInput(
                f"a {kind} key is not an index into the request's {len(names)} feature_names",
                code="invalid_feature",
                status=422,
            ) from None
        given += len(keys)
    for by_name in (msg.ints, msg.floats, msg.strings):
        if by_name:
            out.update(by_name)
            given += len(by_name)
    if len(out) != given:
        raise InvalidInput(
            "a feature is given more than once (in two of ints/floats/strings or both forms)",
            code="invalid_feature",
            status=422,
        )
    return out


def score_ads_request(msg: pb.ScoreAdsRequest) -> dict[str, Any]:
    names = list(msg.feature_names)
    context = features(msg.context, names) if msg.HasField("context") else {}
    candidates = [{"ad_id": c.ad_id, "features": features(c.features, names)} for c in msg.candidates]
    return {"context": context, "candidates": candidates, "model_version": msg.model_version or None}


def encode_score_ads(doc: dict[str, Any]) -> pb.ScoreAdsRequest:
    """Client side: a ``/v1/ads/ctr`` JSON body as a compact ``ScoreAdsRequest`` (each feature name sent once)."""
    index: dict[str, int] = {}
    msg = pb.ScoreAdsRequest(model_version=doc.get("model_version") or 0)

    def fill(target: pb.Features, row: dict[str, Any]) -> None:
        for name, value in row.items():
            key = index.setdefault(name, len(index))
            if isinstance(value, bool) or value is None:
                raise TypeError(f"feature {name!r}: {value!r} has no wire form (leave missing features out)")
            if isinstance(value, int):
                target.int_keys.append(key)
                target.int_values.append(value)
            elif isinstance(value, float):
                target.float_keys.append(key)
                target.float_values.append(value)
            else:
                target.string_keys.append(key)
                target.string_values.append(str(value))

    if doc.get("context"):
        fill(msg.context, doc["context"])
    for cand in doc["candidates"]:
        fill(msg.candidates.add(ad_id=cand["ad_id"]).features, cand.get("features") or {})
    msg.feature_names.extend(index)
    return msg


def score_ads_response(doc: dict[str, Any]) -> pb.ScoreAdsResponse:
    resp = pb.ScoreAdsResponse(model=doc["model"], version=doc["version"])
    scores = resp.scores
    for s in doc["scores"]:
        scores.add(ad_id=s["ad_id"], pctr=s["pctr"])
    return resp


def chat_request(msg: pb.ChatRequest) -> dict[str, Any]:
    doc: dict[str, Any] = {"message": msg.message, "model_version": msg.model_version or None}
    if msg.HasField("session_id"):
        doc["session_id"] = msg.session_id
    return doc


def chat_response(doc: dict[str, Any]) -> pb.ChatResponse:
    fields = ("intent", "confidence", "reply", "handoff", "truncated", "model", "version", "session_id")
    return pb.ChatResponse(**{k: doc[k] for k in fields if doc.get(k) is not None})


def recommend_request(msg: pb.RecommendRequest) -> dict[str, Any]:
    """Unset optional fields stay out of the dict, so the schema's defaults and ``None`` rules are the REST ones
    (an unset ``history`` is JSON's ``null``; an empty one is ``[]``)."""
    doc: dict[str, Any] = {"exclude": list(msg.exclude), "exclude_purchased": msg.exclude_purchased}
    if msg.HasField("user_id"):
        doc["user_id"] = msg.user_id
    if msg.HasField("history"):
        doc["history"] = list(msg.history.ids)
    if msg.HasField("k"):
        doc["k"] = msg.k
    return doc


def encode_recommend(doc: dict[str, Any]) -> pb.RecommendRequest:
    """Client side: a ``/v1/recommend`` JSON body as a ``RecommendRequest``."""
    msg = pb.RecommendRequest(exclude=doc.get("exclude") or [], exclude_purchased=bool(doc.get("exclude_purchased")))
    if doc.get("user_id") is not None:
        msg.user_id = doc["user_id"]
    if doc.get("history") is not None:
        msg.history.SetInParent()
        msg.history.ids.extend(doc["history"])
    if doc.get("k") is not None:
        msg.k = doc["k"]
    return msg


def recommend_response(doc: dict[str, Any]) -> pb.RecommendResponse:
    resp = pb.RecommendResponse(model=doc["model"], version=doc["version"], degraded=doc["degraded"],
                                history_source=doc["history_source"], history_used=doc["history_used"],
                                unknown_items=doc["unknown_items"])  # fmt: skip
    items = resp.items
    for it in doc["items"]:
        items.add(item_id=it["item_id"], score=it["score"], title=it["title"])
    return resp


def event_request(msg: pb.EventRequest) -> dict[str, Any]:
    doc: dict[str, Any] = {"user_id": msg.user_id, "item_id": msg.item_id, "type": msg.type}
    if msg.HasField("ts"):
        doc["ts"] = msg.ts
    return doc


def event_response(doc: dict[str, Any]) -> pb.EventResponse:
    return pb.EventResponse(stored=doc["stored"], degraded=doc["degraded"], backend=doc["backend"])


def availability_request(msg: pb.AvailabilityRequest) -> dict[str, Any]:
    return {"items": list(msg.items), "available": msg.available}


def availability_response(doc: dict[str, Any]) -> pb.AvailabilityResponse:
    return pb.AvailabilityResponse(acknowledged=doc["acknowledged"], degraded=doc["degraded"],
                                   backend=doc["backend"], unavailable_items=doc["unavailable_items"])  # fmt: skip


def search_candidate(msg: pb.SearchCandidate, i: int) -> dict[str, Any]:
    """One candidate as its JSON object: ``product_id`` plus the text fields (strings, or lists of strings)."""
    fields: dict[str, Any] = dict(msg.text)
    for name, values in msg.text_lists.items():
        if name in fields:
            raise InvalidInput(
                f"candidates[{i}].{name}: given in both text and text_lists", code="invalid_field", status=422
            )
        fields[name] = list(values.values)
    if "product_id" in fields:
        raise InvalidInput(f"candidates[{i}]: product_id is not a text field", code="unknown_field", status=422)
    return {"product_id": msg.product_id, **fields}


def rank_search_request(msg: pb.RankSearchRequest) -> dict[str, Any]:
    doc: dict[str, Any] = {"query": msg.query, "model_version": msg.model_version or None,
                           "candidates": [search_candidate(c, i) for i, c in enumerate(msg.candidates)]}  # fmt: skip
    if msg.HasField("k"):
        doc["k"] = msg.k
    return doc


def encode_rank_search(doc: dict[str, Any]) -> pb.RankSearchRequest:
    """Client side: a ``/v1/search/rank`` JSON body as a ``RankSearchRequest`` (null text fields are left out)."""
    msg = pb.RankSearchRequest(query=doc["query"], model_version=doc.get("model_version") or 0)
    if doc.get("k") is not None:
        msg.k = doc["k"]
    for cand in doc["candidates"]:
        c = msg.candidates.add(product_id=cand["product_id"])
        for name, value in cand.items():
            if name == "product_id" or value is None:
                continue
            if isinstance(value, list):
                c.text_lists[name].values.extend(value)
            else:
                c.text[name] = value
    return msg


def rank_search_response(doc: dict[str, Any]) -> pb.RankSearchResponse:
    resp = pb.RankSearchResponse(query_truncated=doc["query_truncated"], model=doc["model"], version=doc["version"])
    results = resp.results
    for r in doc["results"]:
        results.add(product_id=r["product_id"], score=r["score"], rank=r["rank"], truncated=r["truncated"])
    return resp


TASK_RPCS: tuple[TaskRpc, ...] = (
    TaskRpc("ScoreAds", "/v1/ads/ctr", score_ads_request, score_ads_response),
    TaskRpc("Chat", "/v1/chat", chat_request, chat_response),
    TaskRpc("Recommend", "/v1/recommend", recommend_request, recommend_response),
    TaskRpc("RecordEvent", "/v1/events", event_request, event_response),
    TaskRpc("SetAvailability", "/v1/catalogue/availability", availability_request, availability_response),
    TaskRpc("RankSearch", "/v1/search/rank", rank_search_request, rank_search_response),
)


def validate(schema: type[BaseModel], doc: dict[str, Any]) -> BaseModel:
    """The route's schema over the converted dict; failures are the REST route's 422 ``invalid_request``."""
    try:
        return schema.model_validate(doc)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise InvalidInput(f"{where}: {first['msg']}", code="invalid_request", status=422) from None
