"""Chatbot task adapter: Bitext data, frozen MiniLM teacher + head, distilled student, reply index and state."""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.manifest import DriftReference, TensorSpec
from app.tasks.chat.text import (
    CODE_VERSION,
    KIND,
    REPLY_INDEX_FILE,
    STATE_FILE,
    TOKENIZER_FILE,
    ChatState,
    ChatTokenizer,
    softmax,
)
from app.tasks.text import pad_batch
from compress.chat.config import ChatConfig
from compress.chat.data import (
    ChatSplit,
    check_handoff_intents,
    file_records,
    read_pairs,
    read_utterances,
    split_utterances,
)
from compress.config import RobustnessSection
from compress.errors import DataError
from compress.metrics import intent_metrics
from compress.minilm.model import teacher_files
from compress.minilm.onnx import HIDDEN
from compress.robustness.flips import RobustnessSet
from compress.tasks import calibration_batches

log = logging.getLogger("compress")


class ChatTask:
    """In: ``input_ids``/``attention_mask`` INT64 [-1,-1]. Out: ``logits`` [-1, intents], ``embedding`` [-1, 384]."""

    def __init__(self, cfg: ChatConfig) -> None:
        self.cfg = cfg
        self.inputs = [
            TensorSpec(name="input_ids", dtype="INT64", shape=[-1, -1]),
            TensorSpec(name="attention_mask", dtype="INT64", shape=[-1, -1]),
        ]
        self.outputs: list[TensorSpec] = []
        self.fp32: Any = None
        self.history: dict[str, Any] = {}
        self._threshold: float | None = None

    # ---- data ----
    def prepare(self, version_dir: Path | None = None) -> None:
        """Read and split the data and tokenize every part (published tokenizer with ``version_dir``)."""
        d, r = self.cfg.data, self.cfg.reply
        self.pairs = read_pairs(d)
        utts, utt_rows = read_utterances(d, self.pairs)
        self.split: ChatSplit = split_utterances(utts, d, self.cfg.split)
        check_handoff_intents(r.handoff_intents, self.split, d)
        self._augment()
        self.weights, tok_file = teacher_files(self.cfg.train.weights)
        if version_dir is not None:
            tok_file = version_dir / TOKENIZER_FILE
            state = ChatState.load(version_dir / STATE_FILE)
            if state.intents != self.split.intents:
                raise DataError(f"{version_dir}: the version's intents differ from the data's in-scope intents")
        self.tokenizer_file = tok_file
        self.tok = ChatTokenizer.from_file(tok_file, max_tokens=r.max_tokens, max_chars=r.max_chars, truncate=True)
        s = self.split
        self.seqs = {k: self.tok.encode(v) for k, v in s.texts.items()}
        test = self.seqs["test"] + self.tok.encode(s.oos_test)
        labels = np.concatenate([s.labels["test"], np.full(len(s.oos_test), -1, np.int64)])
        order = np.argsort([len(x) for x in test], kind="stable")  # length-sorted rows: cheap trimmed batches
        self.labels = {"test": labels[order], "validation": s.labels["validation"]}
        self.feeds = {"test": self._feeds([test[i] for i in order]), "validation": self._feeds(self.seqs["validation"])}
        self.outputs = [
            TensorSpec(name="logits", dtype="FP32", shape=[-1, len(s.intents)]),
            TensorSpec(name="embedding", dtype="FP32", shape=[-1, HIDDEN]),
        ]
        self.data_files = file_records(d, {d.pairs: len(self.pairs), **utt_rows})
        log.info("chat data: %s", self.split.describe(d, self.cfg.split, self.data_files)["rows"])

    def _augment(self) -> None:
        """``[train].augment``: perturbed copies of the training utterances join the training part (and the
        student's vocabulary), so the head, the student and the baseline all learn from them."""
        from compress.chat.augment import augment

        t, s = self.cfg.train, self.split
        if not t.augment:
            return
        texts, labels, added = augment(s.texts["train"], s.labels["train"], t.augment, t.augment_share, t.seed)
        s.train_pool.extend(texts[len(s.texts["train"]) :])
        self.history["augment"] = {"kinds": list(t.augment), "share": t.augment_share, "added": added}
        log.info("training utterances augmented: %d -> %d (%s)", len(s.texts["train"]), len(texts), added)
        s.texts["train"], s.labels["train"] = texts, labels

    @staticmethod
    def _feeds(seqs: list[list[int]]) -> dict[str, np.ndarray]:
        ids, mask = pad_batch(seqs)
        return {"input_ids": ids, "attention_mask": mask}

    def baseline(self) -> dict[str, float]:
        from compress.chat.train import tfidf_baseline

        s = self.split
        return tfidf_baseline(
            s.texts["train"],
            s.labels["train"],
            s.texts["test"] + s.oos_test,
            np.concatenate([s.labels["test"], np.full(len(s.oos_test), -1)]),
            c=self.cfg.train.head_c,
        )

    # ---- models ----
    def train_fp32(self) -> Any:
        """The frozen teacher encodes the training utterances once; a logistic-regression head is fitted on them."""
        from compress.chat.train import fit_head
        from compress.minilm.model import load_teacher
        from compress.minilm.run import run_model, torch_threads

        t = self.cfg.train
        with torch_threads(t.threads):
            model = load_teacher(self.weights, len(self.split.intents))
            _, emb = run_model(model, self.seqs["train"])
            fit_head(model, emb, self.split.labels["train"], t.head_c)
        self.teacher_emb = emb
        self.teacher_logits = emb @ model.head.weight.detach().numpy().T + model.head.bias.detach().numpy()
        self.history["teacher"] = {
            "model": "all-MiniLM-L6-v2 (frozen)",
            "head": f"logistic regression, C={t.head_c}",
            "train_rows": len(emb),
        }
        self.fp32 = model
        log.info("teacher head trained on %d frozen embeddings", len(emb))
        return model

    def torch_transforms(self) -> dict[str, Callable[[Any], tuple[Any, dict[str, Any]]]]:
        return {"distilled": self._distilled, "emb_int8": self._emb_int8}

    def _distilled(self, model: Any) -> tuple[Any, dict[str, Any]]:
        """Fewer layers initialised from the teacher's, a pruned vocabulary, trained on the teacher's outputs.

        Depth and epochs are searched on validation (``compress.chat.student_search``): the configured recipe
        first, wider or longer ones only while the student falls short of the teacher.
        """
        from compress.chat.student_search import search_student
        from compress.chat.train import distill, student_tokens
        from compress.minilm.model import make_student
        from compress.minilm.run import run_model, torch_threads

        c = self.cfg.distill
        keep = student_tokens(self.tok.encode(self.split.train_pool)) if c.prune_vocab else None
        val_seqs, val_labels = self.seqs["validation"], self.split.labels["validation"]
        runs: dict[tuple[int, ...], dict[str, Any]] = {}

        def trial(layers: list[int], epochs: int) -> tuple[Any, float]:
            student = make_student(model, layers, keep, max_pos=self.cfg.reply.max_tokens)
            recipe = c.model_copy(update={"layers": layers, "epochs": epochs})
            hist = distill(
                student, self.seqs["train"], self.teacher_emb, self.teacher_logits, recipe, self.cfg.train.seed
            )
            logits, _ = run_model(student, val_seqs)
            runs[(*layers, -epochs)] = hist
            log.info(
                "student layers %s, %d epochs: validation accuracy %.4f", layers, epochs, _accuracy(logits, val_labels)
            )
            return student, _accuracy(logits, val_labels)

        with torch_threads(self.cfg.train.threads):
            t_logits, t_emb = run_model(model, val_seqs)
            student, search = search_student(trial, c, _accuracy(t_logits, val_labels))
            _, s_emb = run_model(student, val_seqs)
        chosen = search["chosen"]
        hist = runs[(*chosen["layers"], -chosen["epochs"])]
        self.history["distilled"] = {**hist, "search": search}
        log.info("student distilled: layers %s, %d epochs, loss %s", chosen["layers"], chosen["epochs"], hist["loss"])
        vocab = student.word.num_embeddings
        return student, {
            "student_layers": chosen["layers"],
            "epochs": chosen["epochs"],
            "vocab": vocab,
            "distill_loss": hist["loss"],
            "validation_cosine_to_teacher": round(float((s_emb * t_emb).sum(1).mean()), 5),
            "search": search,
        }

    def _emb_int8(self, model: Any) -> tuple[Any, dict[str, Any]]:
        from compress.embedding_int8 import RowwiseInt8Embedding

        m = copy.deepcopy(model)
        m.word = RowwiseInt8Embedding(m.word.weight)
        return m, {"word_embeddings": "row-wise int8, fp16 scale per row (symmetric)"}

    def qat_finetune(self, model: Any) -> dict[str, Any]:
        """The int8_qat fine-tune: the distillation loss towards the FP32 teacher's embeddings and logits (the
        student's own training objective; for the teacher itself, its FP32 outputs) for ``[qat].epochs`` at a
        constant ``[qat].lr`` on a seeded subsample of at most ``[qat].max_rows`` training utterances. The
        pipeline then evaluates the exported Q/DQ graph on the test rows like every candidate."""
        from compress.chat.train import distill
        from compress.minilm.run import torch_threads
        from compress.qat import subsample

        q, seqs = self.cfg.qat, self.seqs["train"]
        idx = subsample(len(seqs), q.max_rows, self.cfg.train.seed)
        recipe = self.cfg.distill.model_copy(update={"epochs": q.epochs, "lr": q.lr})
        with torch_threads(self.cfg.train.threads):
            hist = distill(
                model,
                [seqs[i] for i in idx],
                self.teacher_emb[idx],
                self.teacher_logits[idx],
                recipe,
                self.cfg.train.seed,
                desc="QAT fine-tune",
                one_cycle=False,
            )
        log.info("QAT fine-tune: %d rows, %d epochs, loss %s", len(idx), q.epochs, hist["loss"])
        return {"train_rows": len(idx), "loss": hist["loss"], "objective": "distillation to the FP32 teacher"}

    # ---- evaluation hooks ----
    def eval_feeds(self, split: str) -> dict[str, np.ndarray]:
        return self.feeds[split]

    def metrics(self, outputs: np.ndarray, split: str) -> dict[str, float]:
        return intent_metrics(outputs, self.labels[split])

    def predict(self, sess: Any, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
        from compress.minilm.onnx import predict_trimmed

        return predict_trimmed(sess, feeds, [output])[0].astype(np.float64)

    def calibration(self) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
        return calibration_batches(self.seqs["train"], self.cfg.quantize, self._feeds)

    def optimize_fp32(self, src: Path, dst: Path) -> dict[str, Any]:
        from compress.minilm.onnx import optimize_minilm

        check = {k: v[:64] for k, v in self.feeds["validation"].items()}
        return optimize_minilm(src, dst, self.cfg.export.fp32_optimizer, check)

    def latency_feeds(self, batch_sizes: list[int]) -> dict[int, dict[str, np.ndarray]]:
        """Realistic batches: ``b`` random held-out in-scope messages, padded to their longest (as served)."""
        rng = np.random.default_rng(self.cfg.split.seed)
        seqs = self.seqs["test"]
        return {b: self._feeds([seqs[i] for i in rng.choice(len(seqs), b, replace=b > len(seqs))]) for b in batch_sizes}

    def robustness_set(self, r: RobustnessSection) -> RobustnessSet | str:
        """Sampled in-scope test messages with a typo, other casing/punctuation, or a dropped word; a flip: the
        predicted intent (argmax of ``logits``) changed."""
        from compress.robustness.perturb import perturb_texts, sample

        texts = self.split.texts["test"]
        if not texts:
            return "the data has no in-scope test messages"
        clean = [texts[i] for i in sample(len(texts), r.rows, r.seed)]
        pert, kinds, src = perturb_texts(clean, r.seed)
        return RobustnessSet(
            self._feeds(self.tok.encode(clean)),
            self._feeds(self.tok.encode(pert)),
            src,
            kinds,
            "argmax",
            "logits",
            definition="the predicted intent (argmax of the logits) changed",
        )

    # ---- publishing ----
    def write_aux(self, version_dir: Path, model_path: Path) -> dict[str, str]:
        """tokenizer.json, and the reply index embedded by this version's own model; calibrates the threshold."""
        from compress.chat.replies import build_index, select_pairs
        from compress.evaluate import session
        from compress.minilm.onnx import predict_trimmed

        shutil.copyfile(self.tokenizer_file, version_dir / TOKENIZER_FILE)
        sess = session(model_path, threads=2)
        self._calibrate(sess)

        def embed(texts: list[str]) -> np.ndarray:
            return predict_trimmed(sess, self._feeds(self.tok.encode(texts)), ["embedding"])[0]

        pairs = select_pairs(self.pairs, self.split.intents, self.cfg.reply.max_pairs_per_intent, self.cfg.split.seed)
        build_index(pairs, self.split.intents, embed).save(version_dir / REPLY_INDEX_FILE)
        return {"tokenizer": TOKENIZER_FILE, "reply_index": REPLY_INDEX_FILE}

    def _calibrate(self, sess: Any) -> None:
        """The handoff threshold of this model, from validation confidences only (``compress.chat.threshold``)."""
        from compress.chat.threshold import calibrate_threshold
        from compress.minilm.onnx import predict_trimmed

        def confidences(feeds: dict[str, np.ndarray]) -> np.ndarray:
            if not len(feeds["input_ids"]):
                return np.zeros(0)
            return np.asarray(softmax(predict_trimmed(sess, feeds, ["logits"])[0]).max(axis=1), np.float64)

        oos = self.split.oos_validation
        in_conf = confidences(self.feeds["validation"])
        oos_conf = confidences(self._feeds(self.tok.encode(oos))) if oos else np.zeros(0)
        self._threshold, record = calibrate_threshold(in_conf, oos_conf, self.cfg.reply)
        self.history["handoff_threshold"] = record
        log.info("handoff threshold %.4f (%s)", self._threshold, record)

    def drift_reference(self, model_path: Path) -> DriftReference:
        """Token counts of the test messages (in- and out-of-scope), and the version's intent and confidence."""
        from app.rollout.bins import categorical_feature, numeric_feature
        from compress.evaluate import session

        feeds = self.feeds["test"]
        p = softmax(self.predict(session(model_path, threads=2), feeds, "logits"))
        intents = self.split.intents
        return DriftReference(
            rows=len(p),
            features=[
                numeric_feature("message_tokens", feeds["attention_mask"].sum(axis=1).tolist(), "input"),
                categorical_feature("intent", [intents[int(k)] for k in p.argmax(axis=1)], "output"),
                numeric_feature("confidence", p.max(axis=1).tolist(), "output"),
            ],
        )

    def write_preprocessing(self, version_dir: Path) -> dict[str, str]:
        """chat.json: intents, the handoff threshold calibrated by ``write_aux`` for this model, limits, texts."""
        from compress.chat.replies import gazetteer

        r = self.cfg.reply
        if self._threshold is None:
            raise DataError("internal: write_aux must run before write_preprocessing (it calibrates the threshold)")
        ChatState(
            intents=self.split.intents,
            threshold=round(self._threshold, 6),
            max_tokens=r.max_tokens,
            max_chars=r.max_chars,
            truncate=r.truncate,
            handoff_reply=r.handoff_reply,
            handoff_intents=list(r.handoff_intents),
            company=dict(r.company),
            gazetteer=gazetteer(self.pairs),
        ).save(version_dir / STATE_FILE)
        return {"kind": KIND, "path": STATE_FILE, "code_version": CODE_VERSION}

    def lineage(self) -> dict[str, Any]:
        split = self.split.describe(self.cfg.data, self.cfg.split, self.data_files)
        return {"data_files": self.data_files, "split": split, "training": self.history}


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean()) if len(labels) else 0.0
