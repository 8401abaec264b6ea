"""Recommendation task adapter: interaction log -> two-tower model with in-graph top-K -> compressed tables.

Model I/O: ``history`` INT64 [-1, L] (item indices, newest first, 0-padded), ``exclude`` INT64 [-1, -1] (0 =
padding) -> ``item_ids`` INT64 [-1, K], ``scores`` FP32 [-1, K] (K = ``retrieval.top_k``). Metrics are computed on ``item_ids``; the
export parity check compares ``scores`` (sorted values: a near-tie swap of two ids is not an export bug).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.manifest import TensorSpec
from app.tasks.recommend.seen import SEEN_FILE, save_seen
from app.tasks.recommend.state import CODE_VERSION, HISTORIES_FILE, KIND, STATE_FILE, RecState, save_histories
from compress.config import RobustnessSection
from compress.recommend.config import RecConfig, recency_tau
from compress.recommend.data import (
    TEST,
    VALIDATION,
    Examples,
    RecSplit,
    file_record,
    make_split,
    non_product_pattern_ok,
    read_log,
)
from compress.recommend.metrics import ranking_metrics
from compress.robustness.flips import RobustnessSet
from compress.tasks import calibration_batches

log = logging.getLogger("compress")


_LAST_SPLIT: dict[str, tuple[tuple[Any, ...], RecSplit]] = {}


def load_split(cfg: RecConfig) -> RecSplit:
    """The cleaned, temporally split log. The last one is kept (keyed by the file's size and mtime and the config
    sections that shape it), so a process that needs the same split twice reads and cleans the file once."""
    non_product_pattern_ok(cfg.data.item_pattern)
    from compress.config import resolve_path

    paths = [cfg.data.resolved_path()] + ([resolve_path(cfg.data.items_path)] if cfg.data.items_path else [])
    try:
        stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    except OSError:
        stats = None
    key = (
        None
        if stats is None
        else (*stats, cfg.data.model_dump_json(), cfg.split.model_dump_json(), cfg.train.history_len)
    )
    last = _LAST_SPLIT.get("split")
    if key is not None and last is not None and last[0] == key:
        return last[1]
    frame, dropped = read_log(cfg.data)
    split = make_split(frame, dropped, cfg.split, cfg.train.history_len)
    if key is not None:
        _LAST_SPLIT["split"] = (key, split)
    return split


class RecTask:
    parity_output = 1

    def __init__(self, cfg: RecConfig) -> None:
        self.cfg = cfg
        L = cfg.train.history_len
        self.inputs = [
            TensorSpec(name="history", dtype="INT64", shape=[-1, L]),
            TensorSpec(name="exclude", dtype="INT64", shape=[-1, -1]),
        ]
        self.outputs = [
            TensorSpec(name="item_ids", dtype="INT64", shape=[-1, -1]),
            TensorSpec(name="scores", dtype="FP32", shape=[-1, -1]),
        ]
        self.fp32: Any = None
        self.history: dict[str, Any] = {}

    # ---- data ----
    def prepare(self, version_dir: Path | None = None) -> None:
        self.split = load_split(self.cfg)
        s = self.split
        self.examples: dict[str, Examples] = {
            "validation": s.window(VALIDATION),
            "test": s.window(TEST),
        }
        self.feeds = {k: self._eval_feeds(v) for k, v in self.examples.items()}
        log.info(
            "rec data: %d items, %d validation and %d test customers; dropped %s",
            len(s.items) - 1,
            len(self.examples["validation"]),
            len(self.examples["test"]),
            s.dropped,
        )

    @staticmethod
    def _feeds(history: np.ndarray) -> dict[str, np.ndarray]:
        return {"history": history, "exclude": np.zeros((len(history), 1), np.int64)}

    def _eval_feeds(self, ex: Examples) -> dict[str, np.ndarray]:
        """With ``exclude_seen`` the graph's ``exclude`` input carries each user's seen items, as in serving."""
        if not self.cfg.retrieval.exclude_seen:
            return self._feeds(ex.history)
        return {"history": ex.history, "exclude": ex.seen_matrix()}

    def baseline(self) -> dict[str, float]:
        from compress.recommend.baselines import all_baselines

        s = self.split
        res = all_baselines(
            s, self.examples["test"], TEST, self.cfg.split.popularity_days, self.cfg.retrieval.exclude_seen
        )
        self.baselines = res
        return {f"{name}.{m}": round(v, 6) for name, ms in res.items() for m, v in ms.items()}

    # ---- models ----
    def train_fp32(self) -> Any:
        """Epochs chosen on the validation window, then a refit on everything before the test window."""
        import torch

        from compress.recommend.train import fit

        t, s = self.cfg.train, self.split
        torch.set_num_threads(t.threads)
        n = len(s.items)
        _, first = fit(self.cfg, n, s.training(VALIDATION, t.max_examples), self.examples["validation"], t.epochs)
        model, final = fit(self.cfg, n, s.training(TEST, t.max_examples), None, first["best_epoch"])
        torch.set_num_threads(1)
        self.history = {
            "model": "two-tower (recency-weighted history mean + MLP; item table, bias, repeat term)",
            "recency_tau_days": recency_tau(self.cfg),
            "selection": first,
            "final": final,
        }
        self.fp32 = model
        return model

    def torch_transforms(self) -> dict[str, Callable[[Any], tuple[Any, dict[str, Any]]]]:
        from compress.recommend.model import with_pq, with_tables

        r = self.cfg.retrieval
        return {
            "table_fp16": lambda m: with_tables(m, "fp16"),
            "table_int8": lambda m: with_tables(m, "int8"),
            "pq": lambda m: with_pq(m, r.pq_subspaces, r.pq_centroids, r.shortlist, self.cfg.train.seed),
        }

    def extra_candidates(self, builder: Any, reference: Any) -> list[Any]:
        """The ANN retrieval candidates (``[retrieval].ann``): see :mod:`compress.recommend.ann`."""
        from compress.recommend.ann import build_candidates

        return build_candidates(self, builder, reference)

    # ---- evaluation hooks ----
    def eval_feeds(self, split: str) -> dict[str, np.ndarray]:
        return self.feeds[split]

    def metrics(self, outputs: np.ndarray, split: str) -> dict[str, float]:
        return ranking_metrics(outputs.astype(np.int64), self.examples[split].targets, len(self.split.items) - 1)

    def predict(self, sess: Any, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
        out = []
        n = len(feeds["history"])
        for i in range(0, n, 512):
            (res,) = sess.run([output], {k: v[i : i + 512] for k, v in feeds.items()})
            out.append(np.asarray(res, np.float64))
        return np.concatenate(out)

    def robustness_set(self, r: RobustnessSection) -> RobustnessSet | str:
        """Sampled test customers (with 2+ history items) with one item of their history dropped (what they saw stays excluded); a flip:
        the set of the ``top_k`` recommended items changed (order within ignored)."""
        from compress.robustness.perturb import drop_history_item, sample

        feeds = self.feeds["test"]
        eligible = np.flatnonzero((feeds["history"] != 0).sum(axis=1) >= 2)  # one item: nothing left to drop
        if not len(eligible):
            return "no test customer has two or more items in their history"
        idx = eligible[sample(len(eligible), r.rows, r.seed)]
        clean = {k: v[idx] for k, v in feeds.items()}
        pert = {**clean, "history": drop_history_item(clean["history"], pad=0, seed=r.seed)}
        k = min(r.top_k, self.cfg.retrieval.top_k)
        return RobustnessSet(
            clean,
            pert,
            np.arange(len(idx), dtype=np.int64),
            ["drop_history_item"] * len(idx),
            "topk_ids",
            "item_ids",
            k=k,
            definition=f"the set of the {k} recommended items changed",
        )

    def calibration(self) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
        return calibration_batches(self.examples["validation"].history, self.cfg.quantize, self._feeds)

    def optimize_fp32(self, src: Path, dst: Path) -> dict[str, Any]:
        """No offline ORT pass: constant folding would expand the INT8/FP16 tables back to FP32 on disk."""
        shutil.copyfile(src, dst)
        return {"fp32_optimizer": "none (tables kept in their stored precision)"}

    # ---- publishing ----
    def write_aux(self, version_dir: Path, model_path: Path) -> dict[str, str]:
        """Each known customer's recent items at the start of the test window (seeds the in-process store) and,
        with ``exclude_seen``, everything each one has seen (the serving side's seen set)."""
        s = self.split
        hist = {u: [s.items[i] for i in h] for u, h in s.histories(TEST).items()}
        save_histories(version_dir / HISTORIES_FILE, hist)
        if not self.cfg.retrieval.exclude_seen:
            return {"histories": HISTORIES_FILE}
        save_seen(version_dir / SEEN_FILE, {u: [s.items[i] for i in v] for u, v in s.seen(TEST).items()})
        return {"histories": HISTORIES_FILE, "seen": SEEN_FILE}

    def write_preprocessing(self, version_dir: Path) -> dict[str, str]:
        from compress.recommend.baselines import popularity

        s, r = self.split, self.cfg.retrieval
        pop = popularity(s, TEST, self.cfg.split.popularity_days)[: r.top_k]
        RecState(
            items=s.items,
            titles=s.titles,
            history_len=self.cfg.train.history_len,
            top_k=r.top_k,
            max_exclude=r.max_exclude,
            history_cap=r.history_cap,
            history_ttl_s=r.history_ttl_s,
            popular=[int(i) for i in pop],
            exclude_seen=r.exclude_seen,
        ).save(version_dir / STATE_FILE)
        return {"kind": KIND, "path": STATE_FILE, "code_version": CODE_VERSION}

    def lineage(self) -> dict[str, Any]:
        s, d = self.split, self.cfg.data
        sp = self.cfg.split
        where: dict[str, Any] = (
            {"kind": "temporal", "validation_start": str(s.val_start), "test_start": str(s.test_start)}
            if sp.kind == "time"
            else {"kind": "leave_last", "leave_last": sp.leave_last}
        )
        split = {
            **where,
            "end": str(s.end),
            "exclude_seen": self.cfg.retrieval.exclude_seen,
            "items": len(s.items) - 1,
            "cleaning": s.dropped,
            "validation_customers": len(self.examples["validation"]),
            "test_customers": len(self.examples["test"]),
            "target": "every product of the customer's invoices in the window, given history before it",
            "baselines": getattr(self, "baselines", {}),
        }
        files = [{**file_record(d.resolved_path()), "rows": s.dropped.get("rows_read", 0)}]
        if d.items_path:
            from compress.config import resolve_path

            files.append({**file_record(resolve_path(d.items_path)), "role": "items"})
        return {
            "data_files": files,
            "split": split,
            "training": self.history,
        }
