"""``POST /v1/chat``: intent, confidence, a retrieved reply (or a handoff) for one customer message (``chat-v1``).

The message is validated on arrival (empty, non-text, over-long: coded 4xx; it never enters a batch). Each message
is one batcher row; the worker thread tokenizes the whole batch in one ``tokenizers`` call that pads to the
batch's longest message and reports truncation, so short messages stay cheap. The version's processors are
loaded by manifest role (``preprocess``, ``tokenizer``, ``reply_index``) — the same loader the tests use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.errors import InvalidInput, PayloadTooLarge
from app.rollout.compare import Comparison
from app.tasks.base import Call, Route, Task, TaskContext, Tensors, VersionFiles
from app.tasks.chat.schemas import ChatRequest, ChatResponse
from app.tasks.chat.text import KIND, ChatPostprocessor, ChatPreprocessor, MessageError, load_version, validate_message

TRUNCATED = "_truncated"


def _message_error(e: MessageError) -> Exception:
    if e.code == "too_long":
        return PayloadTooLarge(
            f"{e} (the version's limit: [reply] max_chars / max_tokens of its compress config)", code="message_too_long"
        )
    if e.code == "empty":
        return InvalidInput(str(e), code="empty_message", status=422)
    return InvalidInput(str(e), code="not_text_message", status=422)


async def chat(req: ChatRequest, call: Call[ChatTask]) -> dict[str, Any]:
    task = call.task
    text = task.validate(req.message)
    out = await call.submit([text])
    reply = task.post([text], out["logits"], out["embedding"])[0]
    return {
        **reply.as_dict(),
        "truncated": bool(out[TRUNCATED][0]),
        "model": call.model,
        "version": call.version,
        "session_id": req.session_id,
    }


class ChatTask(Task):
    kind = KIND
    name = "chat"
    default_model = "chat-intent"
    routes = (
        Route(
            "/v1/chat",
            "chat",
            ChatRequest,
            ChatResponse,
            chat,
            summary="Answer a customer-service message",
            description="Classifies the message's intent and returns a reply retrieved within that intent, with "
            "slots filled from the message, or `handoff: true` when the bot is not confident or the request is "
            "out of scope. Messages longer than the version's token limit are truncated (`truncated: true`).",
            examples={"order status": {"message": "I want to cancel order 12345678", "session_id": "s-1"}},
            response_example={
                "intent": "cancel_order",
                "confidence": 0.9931,
                "handoff": False,
                "truncated": False,
                "reply": "I can help you cancel order 12345678. Go to Order History, ...",
                "model": "chat-intent",
                "version": 2,
                "session_id": "s-1",
            },
            errors={
                400: "invalid_json, invalid_utf8, invalid_header",
                413: "payload_too_large, message_too_long",
                422: "invalid_request, empty_message, not_text_message",
            },
            utf8_check=True,
        ),
    )

    def __init__(self, pre: ChatPreprocessor, post: ChatPostprocessor) -> None:
        self.pre = pre
        self.post = post

    @classmethod
    def load(cls, files: VersionFiles, ctx: TaskContext) -> ChatTask:
        for role in ("preprocess", "tokenizer", "reply_index"):
            files.aux(role)  # a clear "no aux file with role ..." before any parsing
        pre, post = load_version(files.dir, files.manifest)
        return cls(pre, post)

    @classmethod
    def compare(cls, reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> Comparison:
        """Same intent or not, and how far the confidence moved."""
        agree = float(reference["intent"] == candidate["intent"])
        diff = abs(float(reference["confidence"]) - float(candidate["confidence"]))
        return Comparison(agree, {"intent_agree": agree, "confidence_diff": diff})

    def validate(self, message: object) -> str:
        """The clean text, or a coded 4xx; with truncation off, over-long token counts are refused here."""
        try:
            text = validate_message(message, self.pre.max_chars)
            if not self.pre.truncate and (n := self.pre.token_count(text)) > self.pre.max_tokens:
                raise MessageError(f"message is {n} tokens long; the limit is {self.pre.max_tokens} tokens", "too_long")
        except MessageError as e:
            raise _message_error(e) from None
        return text

    def prepare(self, rows: list[Any]) -> Tensors:
        ids, mask, truncated = self.pre.encode_padded(rows)
        return {"input_ids": ids, "attention_mask": mask, TRUNCATED: truncated}

    def drift_rows(self, req: ChatRequest, result: Mapping[str, Any], limit: int) -> list[Mapping[str, Any]]:
        """The message's token count (as the model saw it: truncated at the version's limit), intent, confidence."""
        tokens = len(self.pre.encode([req.message])[0])  # as compress counted the test messages
        return [{"message_tokens": tokens, "intent": result["intent"], "confidence": result["confidence"]}]

    def warmup(self) -> None:
        self.prepare(["hello"])


TASK = ChatTask
