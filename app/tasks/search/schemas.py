"""``POST /v1/search/rank`` request and response bodies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SearchCandidate(BaseModel):
    """A product to rank: its id alone (a product of the version's catalogue) or its id and text fields.

    Text fields are the version's (``title``, ``brand``, ``color``, ``category``, ``bullet_points``,
    ``description`` for ESCI); sent text replaces the catalogue's. Other fields are refused.
    """

    model_config = ConfigDict(extra="allow")

    product_id: str = Field(min_length=1, max_length=128)

    def text_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(json_schema_extra={"minLength": 1, "pattern": r"\S"})
    """The shopper's query (checked for emptiness and length by the version's limits)."""
    candidates: list[SearchCandidate] = Field(json_schema_extra={"minItems": 1})
    k: int | None = Field(default=None, ge=1)
    """Return only the top ``k`` (default: every candidate, ranked)."""
    model_version: int | None = Field(default=None, ge=1)


class RankedProduct(BaseModel):
    product_id: str
    score: float
    rank: int
    """1 = most relevant."""
    truncated: bool
    """Only the beginning of this product's text was read (the pair's token limit)."""


class SearchResponse(BaseModel):
    results: list[RankedProduct]
    query_truncated: bool
    """The query was longer than the version's query token limit and only its beginning was read."""
    model: str
    version: int
