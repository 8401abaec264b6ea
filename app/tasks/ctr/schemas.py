"""``POST /v1/ads/ctr`` request and response bodies."""

from __future__ import annotations

from typing import Annotated, Any

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


class CtrColumnsRequest(_Wire):
    """The same request in columns: candidate ``i`` is ``ad_ids[i]`` with ``context`` overlaid by
    ``columns[name][i]`` for every column (``null`` = missing, as a candidate's explicit ``null``). Cheaper to send
    and to read than one object per candidate: each field name travels once."""

    context: dict[str, Any] = {}
    """Raw fields shared by every candidate; a column of the same name replaces it."""
    ad_ids: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(json_schema_extra={"minItems": 1})
    columns: dict[str, list[Any]]
    """Field name -> one value per candidate, in ``ad_ids`` order (every list as long as ``ad_ids``)."""
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
