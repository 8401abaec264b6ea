"""The chat student's int8_qat candidate in the CI chatbot run: fine-tuned with fake quantization, Q/DQ, gated."""

from __future__ import annotations

from compress.qat import qdq_counts
from tests.fixtures.compress_run import CompressRun

QAT = "distilled+int8_qat"


def test_student_qat_candidate_is_built_exported_as_qdq_and_gated(chat_compress_run: CompressRun) -> None:
    cands = {c.name: c for c in chat_compress_run.result.candidates}
    assert QAT in cands, f"{QAT} missing from the CI run: {sorted(cands)}"
    qat = cands[QAT]
    assert qat.status in ("passed", "failed") and qat.gate is not None, f"not gated: {qat.status}, {qat.gate}"
    assert qat.path is not None and qat.path.is_file(), f"no ONNX file: {qat.path}"
    counts = qdq_counts(qat.path)
    # the student's 3 layers have 6 nn.Linear each, plus the head: 19 INT8 weight matrices, each behind a DQ
    assert counts["int8_initializers"] >= 19 and counts["QuantizeLinear"] >= 19, f"not INT8 Q/DQ: {counts}"
    assert counts["DequantizeLinear"] >= 2 * 19, f"too few DequantizeLinear nodes: {counts}"
    notes = qat.recipe["qat"]
    assert notes["train_rows"] == 256 and notes["epochs"] == 1, f"CI budget not applied: {notes}"
    assert len(notes["loss"]) == 1 and notes["layers"] == 19, notes
    assert notes["torch_onnx_max_diff"] <= chat_compress_run.cfg.qat.parity_tolerance, notes
    student = cands["distilled"]
    ratio = student.bytes / qat.bytes
    assert ratio > 2.5, f"the QAT student is only {ratio:.2f}x smaller than the FP32 student"
