"""Request/response models of ``/v1/recommend`` and ``/v1/events``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ItemId = str


class RecommendRequest(BaseModel):
    # the schema says what the handler enforces: a user id, a history, or both (``{}`` is 422)
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["user_id"], "properties": {"user_id": {"type": "string"}}},
                {"required": ["history"], "properties": {"history": {"type": "array"}}},
            ]
        },
    )

    user_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="read the user's recent history from the feature store"
    )
    history: list[ItemId] | None = Field(
        default=None, max_length=1000, description="item ids, newest first (anonymous sessions); overrides the store"
    )
    k: int = Field(default=10, ge=1, le=100, strict=True)
    exclude: list[ItemId] = Field(default=[], description="item ids never to return")
    exclude_purchased: bool = Field(
        default=False, strict=True, description="drop items the user has purchased (feature store)"
    )


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    title: str


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    model: str
    version: int
    degraded: bool = Field(description="the feature store did not answer: request history or popularity only")
    history_source: Literal["request", "store", "none"]
    history_used: int = Field(description="history items the model read")
    unknown_items: list[str] = Field(
        description="request history/exclude ids not in this version's catalogue, and history ids its user tower "
        "cannot read (items added by a catalogue snapshot: recommendable, not usable as history)",
    )


class EventRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=128)
    item_id: str = Field(min_length=1, max_length=128)
    type: Literal["view", "cart", "purchase"]
    ts: float | None = Field(default=None, ge=0, strict=True, description="epoch seconds (informational)")


class EventResponse(BaseModel):
    stored: bool
    degraded: bool
    backend: str


class AvailabilityRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemId] = Field(min_length=1, max_length=1000, description="item ids (any, known or not)")
    available: bool = Field(strict=True, description="false: never recommend them; true: recommend them again")


class AvailabilityResponse(BaseModel):
    acknowledged: bool = Field(description="true: every answer issued from now on honours the mark")
    degraded: bool = Field(description="the availability store did not answer: nothing was changed")
    backend: str
    unavailable_items: int = Field(description="items marked unavailable after this call (-1 when degraded)")
