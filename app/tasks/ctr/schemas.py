"""``POST /v1/ads/ctr`` request and response bodies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CtrCandidate(_Wire):
    ad_id: str = Field(min_length=1, max_length=256)
    features: dict[str, Any] = {}
    """Raw fields of this candidate (``I1``..``I13``, ``C1``..``C26``); they override the context."""


class CtrRequest(_Wire):
    """Score candidates for one impression: each row is ``context`` merged with one candidate's features."""

    context: dict[str, Any] = {}
    """Raw fields shared by every candidate (user, page, time)."""
    candidates: list[CtrCandidate] = Field(json_schema_extra={"minItems": 1})
    model_version: int | None = Field(default=None, ge=1)
    """Pin a loaded version; default is the newest ready one."""


class CtrScore(_Wire):
    ad_id: str
    pctr: float


class CtrResponse(_Wire):
    model: str
    version: int
    scores: list[CtrScore]
    """In candidate order."""
