"""The one SessionOptions builder: both thread pools sized, spinning as asked, the artifact's own config entries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import onnxruntime as ort

from app.runtime.ort_options import session_options

ROOT = Path(__file__).resolve().parents[2]


def test_both_thread_pools_are_sized_and_spinning_is_explicit() -> None:
    so = session_options(intra_op_threads=3, inter_op_threads=2, allow_spinning=False)
    assert (so.intra_op_num_threads, so.inter_op_num_threads) == (3, 2)
    spins = [so.get_session_config_entry(f"session.{p}.allow_spinning") for p in ("intra_op", "inter_op")]
    assert spins == ["0", "0"], spins
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    defaults = session_options()
    assert (defaults.intra_op_num_threads, defaults.inter_op_num_threads) == (1, 1)


def test_no_other_module_builds_session_options() -> None:
    """Every server, compress, benchmark and test session goes through the builder (peer venvs excepted)."""
    found = subprocess.run(["git", "grep", "--untracked", "-l", "SessionOptions()", "--", "app", "compress", "loadtest", "tests"],
                           cwd=ROOT, capture_output=True, text=True).stdout.split()  # fmt: skip
    allowed = {"app/runtime/ort_options.py", "tests/unit/test_ort_options.py"}
    peers = {f for f in found if f.startswith("loadtest/peers/")}  # run inside Triton/MLServer/PyTriton venvs
    assert set(found) - allowed - peers == set(), found
