"""Catalogue snapshots: a new recommendation version over a new item list, the user tower reused (no retraining).

An ANN version (:mod:`compress.recommend.ann`) is three pieces: the ONNX user tower (history -> user vector),
the item vectors (faiss index + INT8 re-scoring table) and the catalogue (``rec.json``). Only the first needs
training. A snapshot keeps the source version's user tower and item vectors for the items it already knows (at
the same indices: the tower's history embedding is indexed by them), appends the snapshot's new items, retires
the items the snapshot no longer lists (never returned, still readable in histories), rebuilds the index and
publishes the result as a new version, with the source version as its parent.

Cold start: the model is an ID-embedding two-tower, so a brand-new id has no learned vector and the model
cannot make one. ``cold_start = "skip"`` lists the item (titles, availability) but never recommends it until a
snapshot brings a vector; ``"title"`` gives it the mean vector (and bias, repeat propensity) of the known items
whose titles share the most words with its own (a content fallback, measured in ``docs/compression.md``).
The same functions build the SYNTHETIC catalogues of ``loadtest.bench_rec_scale``.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from app.manifest import MANIFEST_FILE, Artifact, AuxFile, Gate, Lineage, Manifest
from app.tasks.recommend.retrieval import INDEX_ROLE, ITEMS_ROLE, ItemTable
from app.tasks.recommend.state import STATE_FILE, RecState
from compress.errors import ConfigError
from compress.publish import file_info, publish

ColdStart = Literal["skip", "title"]
EXACT = "exact"
"""The exhaustive retrieval kind (faiss ``Flat``: every item scored, same re-scoring): the reference at scale."""
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class ItemSide:
    """Everything a version knows per item: ids, titles, augmented vectors ``[v, bias, 0...]``, repeat term."""

    items: list[str]  # index 0 is the padding entry ""
    titles: list[str]
    vectors: np.ndarray  # float32 [N, D']
    repeat_item: np.ndarray  # float32 [N]
    retired: list[int] = field(default_factory=list)
    cold: list[int] = field(default_factory=list)  # indices whose vector is a cold-start fallback

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Source:
    """A published ANN version: the folder, its manifest and state, its item side (de-quantized INT8 table)."""

    dir: Path
    manifest: Manifest
    state: RecState
    side: ItemSide

    @property
    def history_items(self) -> int:
        """Items the user tower's history embedding has rows for."""
        return self.state.history_items or len(self.state.items)


def read_source(version_dir: Path) -> Source:
    """Load an ANN version (one that names an ``ann_items`` file); a dense-graph version cannot be reused here."""
    man = Manifest.model_validate_json((version_dir / MANIFEST_FILE).read_text())
    roles = {f.role: f.path for f in man.aux_files}
    if ITEMS_ROLE not in roles or man.preprocessing is None:
        raise ConfigError(
            f"{version_dir}: not an ANN recommendation version (no {ITEMS_ROLE!r} file); publish one with "
            "[retrieval].ann first"
        )
    state = RecState.load(version_dir / man.preprocessing.path)
    table = ItemTable.load(version_dir / roles[ITEMS_ROLE])
    vectors = table.qweight.astype(np.float32) * table.scale[:, None]
    side = ItemSide(list(state.items), list(state.titles), vectors, table.repeat_item, list(state.retired))
    return Source(version_dir, man, state, side)


def _words(title: str) -> set[str]:
    return set(_WORD.findall(title.lower()))


class TitleNeighbours:
    """The known items (indices ``1 .. known-1``) by title words, IDF-weighted: the ``title`` cold-start fallback."""

    def __init__(self, side: ItemSide, known: int, neighbours: int = 10) -> None:
        self.side, self.k = side, neighbours
        self.docs = [_words(t) for t in side.titles[1:known]]
        df = Counter(w for d in self.docs for w in d)
        self.idf = {w: float(np.log(len(self.docs) / n)) for w, n in df.items()}

    def vector(self, title: str, skip: frozenset[int] = frozenset()) -> tuple[np.ndarray, float] | None:
        """Mean vector and repeat propensity of the ``neighbours`` known items sharing the most title words with
        ``title`` (never the indices in ``skip``: held-out measurements); None when no known title shares a word."""
        words = {w for w in _words(title) if w in self.idf}
        if not words:
            return None
        score = np.array([sum(self.idf[w] for w in words & d) for d in self.docs])
        if skip:
            score[np.fromiter(skip, np.int64) - 1] = 0.0
        top = np.argsort(-score, kind="stable")[: self.k]
        top = top[score[top] > 0] + 1
        if not len(top):
            return None
        return self.side.vectors[top].mean(0), float(self.side.repeat_item[top].mean())


def snapshot(
    source: Source, items: list[str], titles: list[str], cold_start: ColdStart
) -> tuple[ItemSide, dict[str, Any]]:
    """The item side of a new catalogue listing ``items`` (with ``titles``), and what changed.

    Known items keep their index and vector; new ones are appended; an item without a vector (new under
    ``skip``, or no title word in common with a known item) and a known item missing from ``items`` are retired."""
    old = source.side
    index = {it: i for i, it in enumerate(old.items) if i}
    names = list(old.titles)
    new: list[str] = []
    for it, t in zip(items, titles, strict=True):
        if it in index:
            names[index[it]] = t or names[index[it]]
        else:
            new.append(it)
            names.append(t)
    ids = old.items + new
    vectors = np.concatenate([old.vectors, np.zeros((len(new), old.vectors.shape[1]), np.float32)])
    repeat = np.concatenate([old.repeat_item, np.zeros(len(new), np.float32)])
    listed = set(items)
    fallback = TitleNeighbours(old, source.history_items) if cold_start == "title" else None
    retired, cold = [], [i for i in old.cold if ids[i] in listed]
    for j in range(1, len(ids)):
        if ids[j] not in listed:
            retired.append(j)
        elif not vectors[j].any():  # no learned vector (a new item, or one added earlier without one)
            got = fallback.vector(names[j]) if fallback is not None else None
            if got is None:
                retired.append(j)  # listed (titles, availability) but never recommended
                continue
            vectors[j], repeat[j] = got
            cold.append(j)
    side = ItemSide(ids, names, vectors, repeat, retired, sorted(set(cold)))
    added_cold = sum(1 for j in side.cold if j >= len(old.items))
    change = {
        "items": len(ids) - 1,
        "added": len(new),
        "added_with_title_vector": added_cold,
        "added_without_vector": len(new) - added_cold,
        "retired": len(retired),
        "cold_start": cold_start,
    }
    return side, change


class SnapshotGate(Protocol):
    def __call__(self, index: Any, table: ItemTable) -> tuple[Gate, dict[str, Any]]: ...


def snapshot_gate(cfg: Any, source: Source, side: ItemSide) -> SnapshotGate:
    """The gate of a snapshot version: the served retrieval over the new catalogue, on the real test customers of
    ``cfg`` (the split the user tower was trained on), against the parent's exact FP32 figures and ``[gate]``
    rules. Raises :class:`ConfigError` (nothing is published) when a rule fails.

    It applies where the snapshot keeps every trained item: retiring items the test customers bought lowers
    recall by the catalogue's own choice, so then the figures are recorded but nothing is refused. A config whose
    split is not the trained catalogue cannot be evaluated: the version says so in its gate reason."""
    from compress.gate import check

    man = source.manifest
    parent = f"{man.name}/{man.version}"
    known = source.history_items
    fp32 = man.metrics.get("fp32", {})

    def gate(index: Any, table: ItemTable) -> tuple[Gate, dict[str, Any]]:
        from compress.recommend.task import load_split

        split = load_split(cfg)
        if list(split.items) != source.side.items[:known] or not fp32:
            why = "no FP32 figures in its manifest" if not fp32 else f"{cfg.data.path} is not its training catalogue"
            reason = f"catalogue snapshot not re-gated ({parent}: {why}); user tower and gate of {parent}"
            return Gate(passed=man.gate.passed, rule=man.gate.rule, numbers=man.gate.numbers, reason=reason), {
                "gated": False,
                "reason": reason,
            }
        metrics, users = _test_metrics(cfg, source, side, index, table, split)
        result = check(metrics, fp32, cfg.gate.rules)
        lost = sum(1 for j in side.retired if j < known)
        evaluation: dict[str, Any] = {"test_customers": users, "metrics": metrics, "vs": f"{parent} FP32 exact"}
        if lost:
            reason = (
                f"not applied: {lost} trained items retired, so the test customers' purchases of them cannot be "
                f"recommended ({result.reason or 'the rule holds anyway'})"
            )
            evaluation.update(gated=False, reason=reason)
            return Gate(passed=True, rule=result.rule, numbers=result.numbers, reason=reason), evaluation
        if not result.passed:
            raise ConfigError(
                f"catalogue snapshot refused: on {users:,} real test customers {result.reason} "
                f"(rule: {result.rule}, against the exact FP32 model of {parent})"
            )
        evaluation["gated"] = True
        return Gate(passed=True, rule=result.rule, numbers=result.numbers, reason=""), evaluation

    return gate


def _test_metrics(
    cfg: Any, source: Source, side: ItemSide, index: Any, table: ItemTable, split: Any
) -> tuple[dict[str, float], int]:
    """recall@10 / NDCG@10 (and @50, coverage) of the served retrieval over ``side`` on the test window: the
    version's user tower, ``index``, re-scoring by ``table``, retired items (and seen ones, if the config says
    so) excluded, as the service does."""

    from app.tasks.recommend.retrieval import AnnRetrieval
    from compress.evaluate import session
    from compress.recommend.ann import retrieve
    from compress.recommend.data import TEST
    from compress.recommend.metrics import ranking_metrics

    ex = split.window(TEST)
    n = len(ex.history)
    seen = ex.seen_matrix() if cfg.retrieval.exclude_seen else np.zeros((n, 1), np.int64)
    retired = np.broadcast_to(np.asarray(side.retired, np.int64), (n, len(side.retired)))
    exclude = np.concatenate([seen, retired], axis=1)
    sess = session(source.dir / source.manifest.artifact().path)
    retr = AnnRetrieval(index, table, int(cfg.retrieval.shortlist))
    ids = retrieve(sess, retr, ex.history, source.state.top_k, exclude=exclude)
    metrics = ranking_metrics(ids, ex.targets, len(side) - 1)
    return {k: round(v, 6) for k, v in metrics.items()}, n


def publish_side(
    repo: Path,
    source: Source,
    side: ItemSide,
    kind: str,
    retrieval: Any,
    seed: int,
    note: dict[str, Any],
    model: str | None = None,
    threads: int = 1,
    gate: SnapshotGate | None = None,
) -> tuple[int, Path]:
    """Publish ``side`` as a new version of ``model`` (default: the source's name) with the source's user tower.

    ``kind``: an ANN kind of :func:`compress.recommend.ann.index_spec` or ``exact``. With ``gate``
    (:func:`snapshot_gate`) the version is evaluated on real test customers and refused below the rule; without
    it the metrics and gate are the source version's (SYNTHETIC benchmark catalogues). Builds use ``threads``
    OpenMP threads (1: on a loaded shared machine more threads spin and build slower)."""
    import faiss  # type: ignore[import-not-found,unused-ignore]

    from app.tasks.recommend.retrieval import set_threads
    from compress.recommend.ann import INDEX_FILE, ITEMS_FILE, build_index

    src, man = source.dir, source.manifest
    name = model or man.name
    set_threads(threads)

    def stage(d: Path, version: int) -> Manifest:
        shutil.copyfile(src / man.artifact().path, d / "model.onnx")
        t0 = time.perf_counter()
        index, params = build_index(kind, side.vectors, retrieval, seed)
        build_s = time.perf_counter() - t0
        faiss.write_index(index, str(d / INDEX_FILE))
        table = ItemTable.quantize(side.vectors, side.repeat_item)
        table.save(d / ITEMS_FILE)
        checked = gate(index, table) if gate is not None else None
        del index, table
        st, retired = source.state, set(side.retired)
        replace(
            st,
            items=side.items,
            titles=side.titles,
            popular=[i for i in st.popular if 0 < i < len(side) and i not in retired],
            history_items=source.history_items,
            retired=side.retired,
        ).save(d / STATE_FILE)
        aux = []
        for f in man.aux_files:  # histories, seen sets, the source run's report: ids are item strings
            if f.role not in (INDEX_ROLE, ITEMS_ROLE, "preprocess"):
                shutil.copyfile(src / f.path, d / f.path)
                aux.append(AuxFile(role=f.role, **file_info(d, f.path)))
        aux += [
            AuxFile(role="preprocess", **file_info(d, STATE_FILE)),
            AuxFile(role=INDEX_ROLE, **file_info(d, INDEX_FILE)),
            AuxFile(role=ITEMS_ROLE, **file_info(d, ITEMS_FILE)),
        ]
        index_bytes = (d / INDEX_FILE).stat().st_size
        recipe = {
            **man.recipe,
            "candidate": f"ann_{kind}",
            "retrieval": kind,
            "index": {**params, "bytes": index_bytes, "build_s": round(build_s, 3)},
            "rescoring": {"table": "row-wise int8 [v, bias], fp16 scale", "bytes": (d / ITEMS_FILE).stat().st_size},
            "catalogue": {**note, "user_tower_from": f"{man.name}/{man.version}", "retrained": False},
        }
        verdict = Gate(
            passed=man.gate.passed,
            rule=man.gate.rule,
            numbers=man.gate.numbers,
            reason=f"catalogue snapshot: user tower and gate of {man.name}/{man.version} (not retrained)",
        )
        metrics = man.metrics
        if checked is not None:
            verdict, evaluation = checked
            recipe["catalogue"]["evaluation"] = evaluation
            if "metrics" in evaluation:
                metrics = {**man.metrics, "candidate": evaluation["metrics"]}
        return man.model_copy(
            update={
                "name": name,
                "version": version,
                "created_at": datetime.now(UTC),
                "artifacts": [
                    Artifact(format="onnx", precision=man.artifact().precision, **file_info(d, "model.onnx"))
                ],
                "aux_files": aux,
                "preprocessing": man.preprocessing.model_copy(update={"path": STATE_FILE})
                if man.preprocessing
                else None,
                "gate": verdict,
                "metrics": metrics,
                "recipe": recipe,
                "lineage": Lineage(**{**man.lineage.model_dump(), "parent_version": man.version}),
                "candidate": f"ann_{kind}",
            }
        )

    return publish(repo, name, stage)


def read_snapshot(path: Path, item_col: str, title_col: str | None) -> tuple[list[str], list[str]]:
    """Item ids and titles of a catalogue file (CSV, TSV or parquet; one row per item, first title wins)."""
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"catalogue snapshot {path} not found")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    missing = [c for c in (item_col, title_col) if c and c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: no column {missing[0]!r} (columns: {', '.join(map(str, frame.columns))})")
    frame = frame.drop_duplicates(item_col)
    items = frame[item_col].astype(str).str.strip().tolist()
    titles = frame[title_col].fillna("").astype(str).str.strip().tolist() if title_col else [""] * len(items)
    return items, titles


def summary(version_dir: Path) -> str:
    """One line about a published snapshot version (the CLI's answer)."""
    man = json.loads((version_dir / MANIFEST_FILE).read_text())
    c = man["recipe"]["catalogue"]
    return (
        f"published {man['name']}/{man['version']}: {c['items']} items ({c['added']} added, "
        f"{c['added_with_title_vector']} with a title vector, {c['added_without_vector']} without, {c['retired']} "
        f"retired), user tower of {c['user_tower_from']}, retrieval {man['recipe']['retrieval']}"
    )
