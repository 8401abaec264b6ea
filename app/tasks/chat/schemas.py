"""``POST /v1/chat`` request and response bodies."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(json_schema_extra={"minLength": 1, "pattern": r"\S"})
    """The customer's message (checked for emptiness and length by the version's limits)."""
    session_id: str | None = Field(default=None, max_length=128)
    """Echoed back, for the caller's conversation bookkeeping."""
    model_version: int | None = Field(default=None, ge=1)


class ChatResponse(BaseModel):
    intent: str
    confidence: float
    reply: str | None
    """The answer text; null when the version has no canned responses (then: intent, confidence, handoff only)."""
    handoff: bool
    """True when the bot is not confident or the request is out of scope: route the customer to an agent."""
    truncated: bool
    """The message was longer than the version's token limit and only its beginning was read."""
    model: str
    version: int
    session_id: str | None = None
