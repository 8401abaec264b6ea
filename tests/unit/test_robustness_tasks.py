"""Each task's perturbation set (its ``robustness_set`` hook): seeded, perturbs what it says, and its decision
reading turns model outputs into the flips the gate counts. Real tokenizers and featurizers, no trained model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from app.tasks.ctr.features import MISSING_ID, RARE_ID
from app.tasks.search.text import PairEncoder
from compress.chat.config import ChatConfig
from compress.chat.task import ChatTask
from compress.config import PROJECT_ROOT, CompressConfig, RobustnessSection, load_config
from compress.ctr.task import CtrTask
from compress.minilm.model import teacher_files
from compress.recommend.config import RecConfig
from compress.recommend.task import RecTask
from compress.robustness import RobustnessSet, flip_rate
from compress.search.config import SearchConfig
from compress.search.data import Judged, SearchData
from compress.search.task import SearchTask

CONFIGS = PROJECT_ROOT / "compress" / "configs"
SECTION = RobustnessSection(rows=6, seed=5)


def _same(a: RobustnessSet, b: RobustnessSet | str) -> bool:
    assert not isinstance(b, str), b
    feeds = [*a.clean.values(), *a.perturbed.values()]
    other = [*b.clean.values(), *b.perturbed.values()]
    return all(np.array_equal(x, y) for x, y in zip(feeds, other, strict=True)) and a.kinds == b.kinds


def _ctr_task(tmp_path: Path) -> CtrTask:
    rng = np.random.default_rng(0)
    lines = ["label,I1,I2,C1,C2"]  # every categorical value frequent: a perturbed id always differs from the clean
    for _ in range(400):
        lines.append(f"{rng.integers(0, 2)},{rng.integers(1, 50)},{rng.normal():.3f},{'abc'[rng.integers(0, 3)]},"
                     f"{'xyz'[rng.integers(0, 3)]}")  # fmt: skip
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    raw = load_config(CONFIGS / "ad_ctr.toml").model_dump(mode="json")
    raw["data"] = {"path": str(tmp_path / "log.csv"), "format": "csv", "header": True, "label": "label",
                   "dense": ["I1", "I2"], "categorical": ["C1", "C2"], "min_freq": 1}  # fmt: skip
    task = CtrTask(CompressConfig.model_validate(raw))
    task.prepare()
    return task


def test_ctr_set_breaks_one_categorical_field_or_jitters_the_numbers(tmp_path: Path) -> None:
    task = _ctr_task(tmp_path)
    rset = task.robustness_set(SECTION)
    assert _same(rset, task.robustness_set(SECTION)), "same seed, different perturbation set"
    n = len(rset.clean["sparse"])
    assert n == 6 and rset.kinds == ["cat_missing"] * n + ["cat_unseen"] * n + ["dense_jitter"] * n, rset.kinds
    clean_sparse, pert_sparse = rset.clean["sparse"][rset.source], rset.perturbed["sparse"]
    changed = (clean_sparse != pert_sparse).sum(axis=1)
    assert changed[: 2 * n].tolist() == [1] * (2 * n), f"one field per categorical row: {changed}"
    assert set(pert_sparse[:n][clean_sparse[:n] != pert_sparse[:n]].tolist()) == {MISSING_ID}, pert_sparse[:n]
    assert set(pert_sparse[n : 2 * n][clean_sparse[n : 2 * n] != pert_sparse[n : 2 * n]].tolist()) == {RARE_ID}
    jittered = rset.perturbed["dense"][2 * n :]
    assert (changed[2 * n :] == 0).all() and not np.allclose(jittered, rset.clean["dense"]), jittered
    assert rset.partner is not None and (rset.partner != np.arange(n)).all(), rset.partner
    scores = np.linspace(0.1, 0.6, n)  # an ad moving past its partner is a flip, one staying on its side is not
    pert = scores[rset.source].copy()
    pert[0] = scores[rset.partner[0]] + (0.01 if scores[0] < scores[rset.partner[0]] else -0.01)
    assert flip_rate(scores, pert, rset)["flip_rate"] == round(1 / (3 * n), 6)


def test_chat_set_perturbs_every_sampled_message_and_reads_the_intent() -> None:
    cfg = load_config(CONFIGS / "chatbot.toml")
    assert isinstance(cfg, ChatConfig)
    task = ChatTask(cfg)
    from app.tasks.chat.text import ChatTokenizer

    task.tok = ChatTokenizer.from_file(teacher_files("")[1], max_tokens=64, max_chars=2000, truncate=True)
    texts = [f"I want to cancel order number {i} please" for i in range(10)] + ["where is my parcel"]
    task.split = SimpleNamespace(texts={"test": texts})  # type: ignore[assignment]
    rset = task.robustness_set(SECTION)
    assert not isinstance(rset, str)
    assert _same(rset, task.robustness_set(SECTION)), "same seed, different perturbation set"
    assert len(rset.clean["input_ids"]) == 6 and len(rset.kinds) == 18 and rset.output == "logits", rset.describe()
    for p, s in enumerate(rset.source):
        a, b = rset.clean["attention_mask"][s], rset.perturbed["attention_mask"][p]
        ids_a, ids_b = rset.clean["input_ids"][s][a == 1], rset.perturbed["input_ids"][p][b == 1]
        assert ids_a.tolist() != ids_b.tolist(), f"{rset.kinds[p]} left row {s}'s tokens unchanged"
    logits = np.tile([[2.0, 1.0]], (6, 1))
    pert = np.tile([[2.0, 1.0]], (18, 1))
    pert[4] = [0.0, 1.0]  # one message's intent changes
    assert flip_rate(logits, pert, rset)["flip_rate"] == round(1 / 18, 6)
    task.split = SimpleNamespace(texts={"test": []})  # type: ignore[assignment]
    assert task.robustness_set(SECTION) == "the data has no in-scope test messages"


def _search_task(mode: str) -> SearchTask:
    raw = load_config(CONFIGS / "search_ci.toml").model_dump(mode="json")
    raw["rank"]["mode"] = mode
    task = SearchTask(SearchConfig.model_validate(raw))
    task.enc = PairEncoder.from_file(teacher_files("")[1], 32, 12)
    products = [f"p{i}" for i in range(14)]
    task.data = SearchData(
        [Judged(q, products[: 12 + i], np.zeros(12 + i)) for i, q in enumerate(["red running shoes", "usb cable"])],
        {p: {"title": f"product {p}"} for p in products},
        rows=0,
    )
    task.product_tokens = {p: task.enc.products([f"product {p}"])[0][0] for p in products}
    task.split = SimpleNamespace(test=[0, 1])  # type: ignore[assignment]
    return task


def test_search_set_reranks_each_query_list_and_flips_on_a_changed_top_10() -> None:
    task = _search_task("cross_encoder")
    rset = task.robustness_set(SECTION)
    assert rset.describe()["clean_rows"] == 2 and len(rset.kinds) == 6 and rset.source.tolist() == [0, 1] * 3
    assert len(rset.clean["input_ids"]) == 12 + 13, "one pair row per judged product"
    scores = np.arange(25, dtype=np.float64)  # pair scores in row order: the last 10 products of each list win
    m = rset.decisions(scores, "clean")
    assert m.shape == (2, 13) and np.isneginf(m[0, 12]) and m[1, 12] == 24.0, m
    pert = np.arange(len(rset.perturbed["input_ids"]), dtype=np.float64)
    pert[0] = 1e6  # the first perturbed query lifts its first product (ranked last) into the top 10: a flip
    r = flip_rate(m, rset.decisions(pert, "perturbed"), rset)
    assert r["flip_rate"] == round(1 / 6, 6) and r["by_kind"]["typo"] == 0.5, r


def test_bi_encoder_set_scores_query_vectors_against_int8_product_vectors() -> None:
    task = _search_task("bi_encoder")
    rset = task.robustness_set(SECTION)
    n_rows = len(rset.clean["input_ids"])
    distinct = sorted(task.data.lists[1].products)  # the longer list holds the shorter one's products too
    assert n_rows == 2 + len(distinct), f"query rows then each distinct product once, got {n_rows}"
    vec = np.zeros((n_rows, 4), np.float32)
    vec[:2, 0] = 1.0
    vec[2:, 0] = np.arange(len(distinct))  # a product's score for every query: its row among the products
    m = rset.decisions(vec, "clean")
    want = [distinct.index(p) for p in task.data.lists[0].products]
    assert np.allclose(m[0, :12], want, atol=0.1) and np.isneginf(m[0, 12:]).all(), (m[0], want)


def test_recommend_set_drops_one_history_item_of_customers_with_two_or_more() -> None:
    cfg = load_config(CONFIGS / "recommend_ci.toml")
    assert isinstance(cfg, RecConfig)
    task = RecTask(cfg)
    hist = np.array([[3, 4, 5, 0], [7, 0, 0, 0], [8, 9, 0, 0]], np.int64)
    task.feeds = {"test": {"history": hist, "exclude": np.array([[3], [7], [8]], np.int64)}}
    rset = task.robustness_set(SECTION)
    assert not isinstance(rset, str)
    assert rset.clean["history"].tolist() == [[3, 4, 5, 0], [8, 9, 0, 0]], "a one-item customer cannot lose one"
    kept = (rset.perturbed["history"] != 0).sum(axis=1)
    assert kept.tolist() == [2, 1] and rset.perturbed["exclude"].tolist() == [[3], [8]], rset.perturbed
    ids = np.array([list(range(12)), list(range(12))], np.float64)
    pert = ids.copy()
    pert[1, 9], pert[0, 11] = 99, 98  # row 1 loses item 9 from its top 10 (flip); row 0 changes rank 12 only
    assert flip_rate(ids, pert, rset)["flip_rate"] == 0.5
    task.feeds = {"test": {"history": hist[1:2], "exclude": hist[1:2, :1]}}
    assert task.robustness_set(SECTION) == "no test customer has two or more items in their history"
