"""Chatbot pre/post-processing: one code path for training, evaluation and serving (numpy + ``tokenizers``).

Serving flow for ``POST /v1/chat``::

    pre, post = load_version(version_dir, manifest)          # aux files by role: preprocess, tokenizer, reply_index
    ids, mask = pre.batch(messages)                          # validated, padded to the batch's longest
    logits, embedding = session.run(["logits", "embedding"], {"input_ids": ids, "attention_mask": mask})
    replies = [r.as_dict() for r in post(messages, logits, embedding)]  # {"intent","confidence","reply","handoff"}

A dynamic batcher that merges requests can validate per request with ``pre.encode(messages)`` (so one bad message
fails only its own request, ``MessageError.code`` -> HTTP 422) and pad the merged batch with ``pad_batch``.

Padding is per batch (to the longest message in it, never a fixed 128): short chat messages then cost a
fraction of the compute. Nothing here does I/O at import; ``tokenizers`` is imported when a tokenizer loads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from app.tasks.chat.replies import ReplyIndex, compose_reply
from app.tasks.ids import canonical
from app.tasks.text import PAD_ID, pad_batch

if TYPE_CHECKING:
    from app.manifest import Manifest

KIND = "chat"
CODE_VERSION = "chat-pre-1"
STATE_FILE = "chat.json"
TOKENIZER_FILE = "tokenizer.json"
REPLY_INDEX_FILE = "replies.npz"
MAX_TOKENS = 64  # default per-message limit incl. [CLS]/[SEP]; Bitext messages are at most ~40 tokens
MAX_CHARS = 1000


class MessageError(ValueError):
    """A message cannot be processed; ``code`` is machine-readable ('empty', 'too_long', 'not_text')."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ChatState:
    """The version's chat settings (``chat.json``): intents in logit order, handoff rule and limits."""

    intents: list[str]
    threshold: float = 0.5
    max_tokens: int = MAX_TOKENS
    max_chars: int = MAX_CHARS
    truncate: bool = True
    handoff_reply: str = "I'll hand you to a human agent who can help with that."
    handoff_intents: list[str] = field(default_factory=list)
    company: dict[str, str] = field(default_factory=dict)
    gazetteer: dict[str, list[str]] = field(default_factory=dict)
    kind: str = KIND
    code_version: str = CODE_VERSION

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> ChatState:
        raw = json.loads(path.read_text())
        if canonical(str(raw.get("kind"))) != KIND:
            raise ValueError(f"{path}: chat state kind {raw.get('kind')!r} is not {KIND!r}")
        return cls(**raw)


# ---- validation, tokenization and length-bucketed padding ----
def validate_message(text: Any, max_chars: int = MAX_CHARS) -> str:
    """The message stripped of surrounding whitespace; empty, non-text or over-long input is a MessageError."""
    if not isinstance(text, str):
        raise MessageError(f"message must be a string, got {type(text).__name__}", "not_text")
    stripped = text.strip()
    if not stripped:
        raise MessageError("message is empty or only whitespace", "empty")
    if len(stripped) > max_chars:
        raise MessageError(f"message has {len(stripped)} characters; the limit is {max_chars}", "too_long")
    return stripped


def truncate_ids(ids: list[int], max_tokens: int, *, truncate: bool = True) -> list[int]:
    """Keep ``[CLS] + first tokens + [SEP]`` within ``max_tokens``; refuse instead when ``truncate`` is off."""
    if len(ids) <= max_tokens:
        return ids
    if not truncate:
        raise MessageError(f"message is {len(ids)} tokens long; the limit is {max_tokens} tokens", "too_long")
    return [*ids[: max_tokens - 1], ids[-1]]


class ChatTokenizer:
    """The version's WordPiece tokenizer (``tokenizer.json``) with the token limit and no built-in padding."""

    def __init__(
        self, tokenizer: Any, max_tokens: int = MAX_TOKENS, max_chars: int = MAX_CHARS, truncate: bool = True
    ) -> None:
        tokenizer.no_padding()  # the file pads to 128: padding is per batch here
        tokenizer.no_truncation()  # truncation is ours, so we know when it happens
        self.tokenizer, self.max_tokens, self.max_chars, self.truncate = tokenizer, max_tokens, max_chars, truncate

    @classmethod
    def from_file(cls, path: Path, **limits: Any) -> Self:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), **limits)

    def encode(self, messages: Sequence[Any]) -> list[list[int]]:
        """Validated, truncated token ids per message (raises MessageError naming the message's position)."""
        texts = []
        for i, m in enumerate(messages):
            try:
                texts.append(validate_message(m, self.max_chars))
            except MessageError as e:
                raise MessageError(f"messages[{i}]: {e}", e.code) from None
        out = []
        for i, enc in enumerate(self.tokenizer.encode_batch(texts)):
            try:
                out.append(truncate_ids(list(enc.ids), self.max_tokens, truncate=self.truncate))
            except MessageError as e:
                raise MessageError(f"messages[{i}]: {e}", e.code) from None
        return out

    def batch(self, messages: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs for one batch of messages, padded to its longest member."""
        return pad_batch(self.encode(messages))

    def encode_padded(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Already-validated texts -> ``(input_ids, attention_mask, truncated)``, padded to the longest text.

        ``tokenizers`` itself pads per batch and truncates (keeping ``[CLS] ... [SEP]``), and reports truncation
        through each encoding's ``overflowing`` parts; the serving path uses this, one call per batch.
        """
        encs = self._padded().encode_batch(list(texts))
        ids = np.array([e.ids for e in encs], dtype=np.int64).reshape(len(encs), -1)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64).reshape(len(encs), -1)
        truncated = np.array([bool(e.overflowing) for e in encs], dtype=np.bool_)
        return ids, mask, truncated

    def _padded(self) -> Any:
        tok = getattr(self, "_padded_tokenizer", None)
        if tok is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(self.tokenizer.to_str())
            pad = tok.id_to_token(PAD_ID) or "[PAD]"
            tok.enable_padding(pad_id=PAD_ID, pad_token=pad)  # no length: pad to the batch's longest
            tok.enable_truncation(max_length=self.max_tokens)
            self._padded_tokenizer = tok
        return tok

    def token_count(self, text: str) -> int:
        """Tokens of one text including special tokens (to refuse over-long text when truncation is off)."""
        return len(self.tokenizer.encode(text).ids)


class ChatPreprocessor(ChatTokenizer):
    """The tokenizer configured from a published version's aux files (``tokenizer.json`` + ``chat.json``)."""

    @classmethod
    def load(cls, version_dir: Path, state: ChatState | None = None) -> ChatPreprocessor:
        st = state or ChatState.load(version_dir / STATE_FILE)
        return cls.from_file(
            version_dir / TOKENIZER_FILE, max_tokens=st.max_tokens, max_chars=st.max_chars, truncate=st.truncate
        )


# ---- decision and reply ----
def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def oos_scores(logits: np.ndarray) -> np.ndarray:
    """Out-of-scope score per row: ``1 - max softmax probability`` (higher = more likely out of scope)."""
    out: np.ndarray = 1.0 - softmax(logits).max(axis=-1)
    return out


@dataclass(frozen=True)
class ChatReply:
    intent: str
    confidence: float
    reply: str | None
    """None for a version built without a responses file: intent + confidence + handoff only."""
    handoff: bool
    missing: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"intent": self.intent, "confidence": self.confidence, "reply": self.reply, "handoff": self.handoff}


class ChatPostprocessor:
    """Logits + embeddings of a batch -> one reply per message (retrieved, slot-filled, or a handoff)."""

    def __init__(self, state: ChatState, index: ReplyIndex) -> None:
        self.state, self.index = state, index

    @classmethod
    def load(cls, version_dir: Path, state: ChatState | None = None) -> ChatPostprocessor:
        st = state or ChatState.load(version_dir / STATE_FILE)
        return cls(st, ReplyIndex.load(version_dir / REPLY_INDEX_FILE))

    def decide(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(intent ids, confidences, handoff flags): hand off when confidence is below the version's threshold."""
        p = softmax(logits)
        top = p.argmax(axis=-1)
        conf = p[np.arange(len(p)), top]
        return top, conf, conf < self.state.threshold

    def __call__(self, messages: Sequence[str], logits: np.ndarray, embeddings: np.ndarray) -> list[ChatReply]:
        """The reply rules live in :func:`app.tasks.chat.replies.compose_reply` (small talk, handoff, retrieval)."""
        if not (len(messages) == len(logits) == len(embeddings)):
            raise ValueError(f"{len(messages)} messages, {len(logits)} logit rows, {len(embeddings)} embeddings")
        if logits.shape[-1] != len(self.state.intents):
            raise ValueError(f"logits have {logits.shape[-1]} intents; the version has {len(self.state.intents)}")
        top, conf, _low = self.decide(logits)
        st, index = self.state, self.index
        out = []
        for msg, c, k, emb in zip(messages, conf, top, embeddings, strict=True):
            intent = st.intents[int(k)]
            template = index.best(np.asarray(emb, dtype=np.float32), intent) if index.has_replies else None
            answer = compose_reply(
                msg,
                intent,
                float(c),
                threshold=st.threshold,
                template=template,
                handoff_reply=st.handoff_reply,
                handoff_intents=st.handoff_intents,
                has_replies=index.has_replies,
                company=st.company,
                gazetteer=st.gazetteer,
            )
            out.append(ChatReply(intent, round(float(c), 4), answer.reply, answer.handoff, answer.missing))
        return out


def load_version(version_dir: Path, manifest: Manifest) -> tuple[ChatPreprocessor, ChatPostprocessor]:
    """Both processors of a published (verified) version, from the aux files its manifest names by role."""
    state = ChatState.load(version_dir / manifest.aux("preprocess").path)
    pre = ChatPreprocessor.from_file(
        version_dir / manifest.aux("tokenizer").path,
        max_tokens=state.max_tokens,
        max_chars=state.max_chars,
        truncate=state.truncate,
    )
    index = ReplyIndex.load(version_dir / manifest.aux("reply_index").path)
    return pre, ChatPostprocessor(state, index)
