"""The chatbot's serving bundle: tokenize one request on arrival, pad per batch, answer per message.

Tokenization happens once per request before queueing (so a bad message never enters a batch); the batcher
then pads the token ids of a whole batch to its longest member (``pad_batch``), and the post-processor turns
each message's logits and embedding into an intent, a retrieved reply or a handoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.tasks.chat import ChatPostprocessor, ChatPreprocessor, ChatState, pad_batch, truncate_ids, validate_message


@dataclass
class ChatServing:
    """Loaded from a version's ``chat.json`` (+ ``tokenizer.json`` and ``replies.npz`` beside it)."""

    state: ChatState
    tokenizer: ChatPreprocessor
    post: ChatPostprocessor

    @classmethod
    def load(cls, state_path: Path) -> ChatServing:
        state = ChatState.load(state_path)
        d = state_path.parent
        return cls(state, ChatPreprocessor.load(d, state), ChatPostprocessor.load(d, state))

    def encode(self, message: object) -> tuple[str, list[int], bool]:
        """(clean text, token ids, truncated?) for one message; raises ``MessageError`` on bad input."""
        text = validate_message(message, self.state.max_chars)
        ids = list(self.tokenizer.tokenizer.encode(text).ids)
        kept = truncate_ids(ids, self.state.max_tokens, truncate=self.state.truncate)
        return text, kept, len(kept) < len(ids)

    def transform_records(self, rows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """The batcher hook: token ids of a whole batch -> inputs padded to the batch's longest member."""
        ids, mask = pad_batch(rows)
        return {"input_ids": ids, "attention_mask": mask}
