"""Search ranking task adapter: judged query-product lists, fine-tuned MiniLM cross-encoder, distilled student.

Model: ``input_ids``/``attention_mask`` INT64 [-1,-1] (``[CLS] query [SEP] product [SEP]``) -> ``score`` [-1, 1].
Metrics are per query (NDCG@k, MRR) over the test queries' judged lists; a published version carries the
tokenizer, its limits (``search.json``) and the catalogue's product text (pre-tokenised when it loads).
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.manifest import TensorSpec
from app.tasks.search.text import (
    BI,
    CATALOGUE_FILE,
    CODE_VERSION,
    KIND,
    STATE_FILE,
    TOKENIZER_FILE,
    VECTORS_FILE,
    PairEncoder,
    SearchState,
    dot_scores,
    pad_pairs,
    product_text,
    quantize_rows,
    single_seq,
    write_catalogue,
    write_vectors,
)
from compress.config import RobustnessSection
from compress.minilm.onnx import HIDDEN
from compress.robustness.flips import RobustnessSet, Side
from compress.search.config import SearchConfig
from compress.search.data import QuerySplit, SearchData, read_judgments, split_queries
from compress.search.metrics import ranking_metrics
from compress.search.train import Lists
from compress.tasks import calibration_batches

SPECIAL_TOKENS = (0, 100, 101, 102, 103)
log = logging.getLogger("compress")


class SearchTask:
    """The ``search`` adapter (see the module docstring)."""

    def __init__(self, cfg: SearchConfig) -> None:
        self.cfg = cfg
        self.inputs = [
            TensorSpec(name="input_ids", dtype="INT64", shape=[-1, -1]),
            TensorSpec(name="attention_mask", dtype="INT64", shape=[-1, -1]),
        ]
        self.bi = cfg.rank.mode == BI
        self.outputs = [
            TensorSpec(name="embedding", dtype="FP32", shape=[-1, HIDDEN])
            if self.bi
            else TensorSpec(name="score", dtype="FP32", shape=[-1, 1])
        ]
        self.fp32: Any = None
        self.history: dict[str, Any] = {}

    # ---- data ----
    def prepare(self, version_dir: Path | None = None) -> None:
        """Read the judgments, split by query, tokenise every product and query once."""
        from compress.minilm.model import teacher_files

        c = self.cfg
        self.data: SearchData = read_judgments(c.data)
        self.split: QuerySplit = split_queries(len(self.data.lists), c.split)
        self.weights, tok = teacher_files(c.train.weights)
        self.tokenizer_file = version_dir / TOKENIZER_FILE if version_dir is not None else tok
        self.enc = PairEncoder.from_file(self.tokenizer_file, c.rank.max_tokens, c.rank.max_query_tokens)
        self.product_ids = list(self.data.catalogue)
        texts = [product_text(self.data.catalogue[p], c.data.text_fields) for p in self.product_ids]
        ptoks, _ = self.enc.products(texts)
        self.product_tokens = dict(zip(self.product_ids, ptoks, strict=True))
        qtoks, _ = self.enc.queries([j.query for j in self.data.lists])
        self.query_tokens = qtoks
        self.parts = {
            "train": self.lists(self.split.train),
            "validation": self.lists(self.split.validation),
            "test": self.lists(self.split.test),
        }
        if self.bi:
            self.singles = {k: self._singles(getattr(self.split, k)) for k in ("validation", "test")}
            self.feeds = {k: self._feeds(v[0]) for k, v in self.singles.items()}
        else:
            self.feeds = {k: self._feeds(self.parts[k].seqs) for k in ("validation", "test")}
        log.info("search data: %s", self.split.describe(self.data)["queries"])

    def lists(self, queries: list[int]) -> Lists:
        """Pair ids of the given queries' judged lists, grouped per query (in the given order)."""
        seqs: list[list[int]] = []
        groups, gains = [], []
        for q in queries:
            j = self.data.lists[q]
            start = len(seqs)
            seqs.extend(self.enc.pair(self.query_tokens[q], self.product_tokens[p])[0] for p in j.products)
            groups.append(np.arange(start, len(seqs)))
            gains.append(j.gains)
        return Lists(seqs, groups, gains)

    def _singles(self, queries: list[int]) -> tuple[list[list[int]], list[int]]:
        """Bi-encoder rows of a part: its queries, then its distinct products; and each pair's product row."""
        products = sorted({p for q in queries for p in self.data.lists[q].products})
        row = {p: len(queries) + i for i, p in enumerate(products)}
        seqs = [single_seq(self.query_tokens[q]) for q in queries] + [
            single_seq(self.product_tokens[p]) for p in products
        ]
        return seqs, [row[p] for q in queries for p in self.data.lists[q].products]

    def bi_scores(self, vectors: np.ndarray, split: str) -> np.ndarray:
        """Pair scores as served: query vector . INT8 product vector (row-wise scale), in the part's pair order."""
        _, prow = self.singles[split]
        queries = getattr(self.split, split)
        qv = np.asarray(vectors, np.float32)[: len(queries)]
        q8, scale = quantize_rows(np.asarray(vectors, np.float32))
        qidx = np.concatenate([np.full(len(self.data.lists[q].products), i) for i, q in enumerate(queries)])
        return np.array([dot_scores(qv[i], q8[[r]], scale[[r]])[0] for i, r in zip(qidx, prow, strict=True)])

    @staticmethod
    def _feeds(seqs: list[list[int]]) -> dict[str, np.ndarray]:
        ids, mask = pad_pairs(seqs)
        return {"input_ids": ids, "attention_mask": mask}

    def part_metrics(self, scores: np.ndarray, part: Lists) -> dict[str, float]:
        r, d = self.cfg.rank, self.cfg.data
        return ranking_metrics(scores, part.groups, part.gains, r.ndcg_k, d.relevant_gain)

    def baseline(self) -> dict[str, float]:
        """BM25 over the product text and zero-shot all-MiniLM-L6-v2 cosine, on the test queries."""
        from compress.search.baselines import bm25_metrics, minilm_metrics

        test = self.split.test
        out = {f"bm25_{k}": v for k, v in bm25_metrics(self, test).items()}
        out.update({f"minilm_{k}": v for k, v in minilm_metrics(self, test).items()})
        return out

    # ---- models ----
    def train_fp32(self) -> Any:
        from compress.minilm.run import torch_threads
        from compress.search.model import load_bi_encoder, load_cross_encoder
        from compress.search.train import fine_tune, score

        t = self.cfg.train
        if self.bi:
            import torch

            bi = load_bi_encoder(self.weights, t.layers)
            feeds = self.feeds["validation"]
            with torch_threads(t.threads), torch.no_grad():
                vec = bi(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"]))
            val = self.metrics(vec.numpy(), "validation")
            self.history["teacher"] = {
                "model": f"bi-encoder: all-MiniLM-L6-v2 zero-shot (layers {t.layers}), product vectors INT8 row-wise",
                "validation": val,
            }
            log.info("bi-encoder (zero-shot): validation %s", val)
            self.fp32 = bi
            return bi
        with torch_threads(t.threads):
            model = load_cross_encoder(self.weights, t.layers)
            hist = fine_tune(
                model,
                self.parts["train"],
                epochs=t.epochs,
                lr=t.lr,
                per_step=t.queries_per_step,
                temperature=t.temperature,
                seed=t.seed,
                head_lr=t.head_lr,
            )
            val = self.part_metrics(score(model, self.parts["validation"].seqs), self.parts["validation"])
        self.history["teacher"] = {
            "model": f"cross-encoder from all-MiniLM-L6-v2 (layers {t.layers})",
            **hist,
            "validation": val,
        }
        log.info("teacher fine-tuned: loss %s, validation %s", hist["epoch_loss"], val)
        self.fp32 = model
        return model

    def torch_transforms(self) -> dict[str, Callable[[Any], tuple[Any, dict[str, Any]]]]:
        if self.bi:
            return {"emb_int8": self._emb_int8}
        return {"distilled": self._distilled, "emb_int8": self._emb_int8}

    def student_vocabulary(self) -> Any:
        """Tokens of every catalogue product and every training query, plus specials (others -> [UNK])."""
        import torch

        seen = {t for toks in self.product_tokens.values() for t in toks}
        seen |= {t for q in self.split.train for t in self.query_tokens[q]}
        return torch.tensor(sorted(seen | set(SPECIAL_TOKENS)), dtype=torch.int64)

    def _distilled(self, model: Any) -> tuple[Any, dict[str, Any]]:
        """Fewer layers, pruned vocabulary, positions cut to the pair limit; trained on the teacher's scores."""
        from compress.minilm.run import torch_threads
        from compress.search.model import student_of
        from compress.search.train import distill, score

        c, t = self.cfg.distill, self.cfg.train
        keep = self.student_vocabulary() if c.prune_vocab else None
        train = self.parts["train"]
        with torch_threads(t.threads):
            teacher_scores = score(model, train.seqs)
            student = student_of(model, c.layers, keep, self.cfg.rank.max_tokens)
            hist = distill(
                student,
                train,
                teacher_scores,
                epochs=c.epochs,
                lr=c.lr,
                per_step=t.queries_per_step,
                temperature=c.temperature,
                score_weight=c.score_weight,
                seed=t.seed,
            )
            val = self.part_metrics(score(student, self.parts["validation"].seqs), self.parts["validation"])
        self.history["distilled"] = {**hist, "validation": val}
        log.info("student distilled: loss %s, validation %s", hist["epoch_loss"], val)
        return student, {
            "student_layers": c.layers,
            "vocab": student.encoder.word.num_embeddings,
            "max_positions": self.cfg.rank.max_tokens,
            "distill_loss": hist["epoch_loss"],
        }

    def _emb_int8(self, model: Any) -> tuple[Any, dict[str, Any]]:
        from compress.embedding_int8 import RowwiseInt8Embedding

        m = copy.deepcopy(model)
        m.encoder.word = RowwiseInt8Embedding(m.encoder.word.weight)
        return m, {"word_embeddings": "row-wise int8, fp16 scale per row (symmetric)"}

    # ---- evaluation hooks ----
    def eval_feeds(self, split: str) -> dict[str, np.ndarray]:
        return self.feeds[split]

    def metrics(self, outputs: np.ndarray, split: str) -> dict[str, float]:
        if self.bi:
            return self.part_metrics(self.bi_scores(outputs, split), self.parts[split])
        return self.part_metrics(np.asarray(outputs).reshape(-1), self.parts[split])

    def predict(self, sess: Any, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
        from compress.minilm.onnx import predict_trimmed

        out = predict_trimmed(sess, feeds, [output])[0].astype(np.float64)
        return out if self.bi else out.reshape(-1)

    def calibration(self) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
        train = self.parts["train"].seqs
        if self.bi:  # the rows a bi-encoder sees: training queries and their products, interleaved
            lists = [self.data.lists[i] for i in self.split.train]
            train = [
                single_seq(t)
                for i, j in zip(self.split.train, lists, strict=True)
                for t in (self.query_tokens[i], self.product_tokens[j.products[0]])
            ]
        return calibration_batches(train, self.cfg.quantize, self._feeds)

    def optimize_fp32(self, src: Path, dst: Path) -> dict[str, Any]:
        from compress.minilm.onnx import optimize_minilm

        check = {k: v[:64] for k, v in self.feeds["validation"].items()}
        return optimize_minilm(src, dst, self.cfg.export.fp32_optimizer, check)

    def latency_feeds(self, batch_sizes: list[int]) -> dict[int, dict[str, np.ndarray]]:
        """``b`` random test pairs padded to their longest: a ``b``-candidate request as served."""
        rng = np.random.default_rng(self.cfg.split.seed)
        if self.bi:  # a request of id-only candidates is one query row, whatever its candidate count
            qs = [single_seq(self.query_tokens[q]) for q in self.split.test]
            return {b: self._feeds([qs[int(rng.integers(len(qs)))]]) for b in batch_sizes}
        seqs = self.parts["test"].seqs
        return {b: self._feeds([seqs[i] for i in rng.choice(len(seqs), b, replace=b > len(seqs))]) for b in batch_sizes}

    def robustness_set(self, r: RobustnessSection) -> RobustnessSet:
        """Sampled test queries with a typo, other casing/punctuation, or a dropped word, each re-ranking its own
        judged list; a flip: the set of the list's ``top_k`` highest-scored products changed (order within
        ignored)."""
        from compress.robustness.perturb import perturb_texts, sample

        test = self.split.test
        queries = [test[i] for i in sample(len(test), r.rows, r.seed)]
        texts = [self.data.lists[q].query for q in queries]
        pert, kinds, src = perturb_texts(texts, r.seed)
        lists = [self.data.lists[q].products for q in queries]
        width = max(len(products) for products in lists)
        sides: dict[Side, tuple[list[list[int]], list[int]]] = {
            "clean": (self.enc.queries(texts)[0], list(range(len(queries)))),
            "perturbed": (self.enc.queries(pert)[0], src.tolist()),
        }
        groups: dict[Side, list[np.ndarray]] = {}
        feeds: dict[Side, dict[str, np.ndarray]] = {}
        distinct = sorted({p for products in lists for p in products})
        for side, (toks, owner) in sides.items():
            if self.bi:  # query rows, then each distinct product once
                row = {p: len(toks) + i for i, p in enumerate(distinct)}
                seqs = [single_seq(t) for t in toks] + [single_seq(self.product_tokens[p]) for p in distinct]
                groups[side] = [np.array([row[p] for p in lists[o]]) for o in owner]
            else:  # one [CLS] query [SEP] product [SEP] row per judged pair
                seqs, groups[side] = [], []
                for t, o in zip(toks, owner, strict=True):
                    start = len(seqs)
                    seqs.extend(self.enc.pair(t, self.product_tokens[p])[0] for p in lists[o])
                    groups[side].append(np.arange(start, len(seqs)))
            feeds[side] = self._feeds(seqs)

        def scores(out: np.ndarray, side: Side) -> np.ndarray:
            rows = groups[side]
            m = np.full((len(rows), width), -np.inf)
            for i, g in enumerate(rows):
                if self.bi:  # as served: query vector . INT8 product vectors
                    q8, scale = quantize_rows(np.asarray(out[g], np.float32))
                    m[i, : len(g)] = dot_scores(out[i], q8, scale)
                else:
                    m[i, : len(g)] = np.asarray(out).reshape(-1)[g]
            return m

        return RobustnessSet(
            feeds["clean"],
            feeds["perturbed"],
            src,
            kinds,
            "topk",
            self.outputs[0].name,
            k=r.top_k,
            definition=f"the set of the {r.top_k} highest-scored products of the query's judged list changed",
            scores=scores,
            clean_rows=len(queries),
        )

    # ---- publishing ----
    def state(self) -> SearchState:
        r, d = self.cfg.rank, self.cfg.data
        return SearchState(
            text_fields=list(d.text_fields),
            max_tokens=r.max_tokens,
            max_query_tokens=r.max_query_tokens,
            max_query_chars=r.max_query_chars,
            max_text_chars=r.max_text_chars,
            relevant_gain=d.relevant_gain,
            mode=r.mode,
        )

    def write_aux(self, version_dir: Path, model_path: Path) -> dict[str, str]:
        """tokenizer.json and the catalogue's product text (tokenised by the server when the version loads)."""
        shutil.copyfile(self.tokenizer_file, version_dir / TOKENIZER_FILE)
        write_catalogue(version_dir / CATALOGUE_FILE, self.data.catalogue.items(), self.cfg.data.text_fields)
        files = {"tokenizer": TOKENIZER_FILE, "catalogue": CATALOGUE_FILE}
        if self.bi:
            write_vectors(version_dir / VECTORS_FILE, self.product_ids, self.product_vectors(model_path))
            files["product_vectors"] = VECTORS_FILE
        return files

    def product_vectors(self, model_path: Path) -> np.ndarray:
        """Every catalogue product's vector from the version's own ONNX model (so INT8 models store their own)."""
        from compress.evaluate import session

        seqs = [single_seq(self.product_tokens[p]) for p in self.product_ids]
        return np.asarray(
            self.predict(session(model_path, threads=self.cfg.train.threads), self._feeds(seqs), self.outputs[0].name),
            np.float32,
        )

    def write_preprocessing(self, version_dir: Path) -> dict[str, str]:
        self.state().save(version_dir / STATE_FILE)
        return {"kind": KIND, "path": STATE_FILE, "code_version": CODE_VERSION}

    def lineage(self) -> dict[str, Any]:
        return {"data_files": self.data.files, "split": self.split.describe(self.data), "training": self.history}
