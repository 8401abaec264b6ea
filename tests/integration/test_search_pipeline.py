"""The real search-ranking pipeline (CI-sized config) on the ESCI judgments: gated, published, baselines beside it."""

from __future__ import annotations

import json

from app.manifest import Manifest
from app.repository import list_versions
from app.runtime.ort_options import wants_dequantize_on_load
from app.tasks.search.text import KIND, VECTORS_FILE, SearchState, read_catalogue, read_vectors
from compress.pipeline import RunResult
from compress.robustness.perturb import TEXT_KINDS
from tests.fixtures.checks import expect_robustness
from tests.fixtures.compress_run import CompressRun

MODEL = "search-ranker"


def test_pipeline_publishes_a_gated_ranker_with_both_baselines(search_compress_run: CompressRun) -> None:
    res = search_compress_run.result
    assert isinstance(res, RunResult) and res.selected is not None
    versions = list_versions(search_compress_run.repo, MODEL)
    assert len(versions) == 2  # the FP32 teacher and the selected candidate
    vdir = search_compress_run.repo / MODEL / str(versions[-1])
    m = Manifest.model_validate(json.loads((vdir / "manifest.json").read_text()))
    assert m.preprocessing is not None and m.preprocessing.kind == KIND
    assert {f.role for f in m.aux_files} >= {"preprocess", "tokenizer", "catalogue", "report"}
    ref = res.candidates[0].metrics
    assert m.gate.passed and m.metrics["candidate"]["ndcg_10"] >= 0.99 * ref["ndcg_10"]
    assert 0.0 < ref["ndcg_10"] <= 1.0 and 0.0 < ref["mrr"] <= 1.0
    for name in ("bm25", "minilm"):
        assert 0.0 < m.metrics["baseline"][f"{name}_ndcg_10"] <= 1.0
    state = SearchState.load(vdir / "search.json")
    assert state.max_tokens == search_compress_run.cfg.rank.max_tokens
    split = m.lineage.split
    test_q, train_q = set(split["test_queries"]), split["queries"]["train"]
    assert len(test_q) == search_compress_run.cfg.split.test_queries and train_q > 0
    expect_robustness(search_compress_run.repo, MODEL, versions, set(TEXT_KINDS))


def test_every_failed_candidate_names_its_reason(search_compress_run: CompressRun) -> None:
    res = search_compress_run.result
    assert isinstance(res, RunResult) and res.selection is not None
    for c in res.candidates[1:]:
        assert c.status in {"passed", "failed", "error"}
        if c is not res.selected:
            assert res.selection.rejected.get(c.name)


def test_bi_encoder_version_stores_int8_vectors_of_its_whole_catalogue(search_bi_compress_run: CompressRun) -> None:
    res = search_bi_compress_run.result
    assert isinstance(res, RunResult) and res.selected is not None
    versions = list_versions(search_bi_compress_run.repo, MODEL)
    assert len(versions) == 1  # CI config: the selected candidate only
    vdir = search_bi_compress_run.repo / MODEL / str(versions[-1])
    m = Manifest.model_validate(json.loads((vdir / "manifest.json").read_text()))
    assert m.aux("product_vectors").path == VECTORS_FILE
    assert [(o.name, o.shape) for o in m.outputs] == [("embedding", [-1, 384])]
    assert SearchState.load(vdir / "search.json").mode == "bi_encoder"
    ids, q8, scale = read_vectors(vdir / VECTORS_FILE)
    cat_ids, _ = read_catalogue(vdir / m.aux("catalogue").path, search_bi_compress_run.cfg.data.text_fields)
    assert sorted(ids) == sorted(cat_ids) and q8.dtype.name == "int8" and q8.shape == (len(ids), 384)
    assert int(abs(q8.astype(int)).max(axis=1).min()) == 127 and (scale > 0).all()  # symmetric, full range per row
    ref = res.candidates[0].metrics
    assert m.gate.passed and m.metrics["candidate"]["ndcg_10"] >= 0.99 * ref["ndcg_10"]
    # the published recipe: weight-only INT8 + 4-bit word table, marked to be folded to FP32 at load
    art = m.artifact("onnx")
    assert art.precision == "int8-weights-int4-emb" and wants_dequantize_on_load(vdir / art.path)
    assert art.bytes * 4 <= res.candidates[0].bytes, (art.bytes, res.candidates[0].bytes)
