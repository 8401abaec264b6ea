"""Triton python-backend model (copied as ``model.py``): one ONNX Runtime ``run`` per batch Triton forms.

Runs inside ``triton_python_backend_stub`` with the peer venv on ``PYTHONPATH``; not imported by the project.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        # runs in the peer's own venv, where this repository is not importable: the settings of
        # app.runtime.ort_options.session_options() (1 intra-op + 1 inter-op thread), spelled out
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def execute(self, requests: list[Any]) -> list[Any]:
        xs = [pb_utils.get_input_tensor_by_name(r, "input").as_numpy() for r in requests]
        x = xs[0] if len(xs) == 1 else np.concatenate(xs)
        (y,) = self.session.run(["output"], {"input": x})
        out, i = [], 0
        for part in xs:
            n = len(part)
            out.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("output", y[i : i + n])]))
            i += n
        return out
