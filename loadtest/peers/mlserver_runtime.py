"""MLServer runtime (copied as ``ort_runtime.py`` beside the model): ONNX Runtime on one intra-op thread.

MLServer 1.7 has no ONNX runtime of its own; this is the smallest faithful one. Runs in the peer venv only.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel  # type: ignore[import-not-found]
from mlserver.codecs import NumpyCodec  # type: ignore[import-not-found]
from mlserver.types import InferenceRequest, InferenceResponse  # type: ignore[import-not-found]
from mlserver.utils import get_model_uri  # type: ignore[import-not-found]


class OrtRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        # runs in the peer's own venv, where this repository is not importable: the settings of
        # app.runtime.ort_options.session_options() (1 intra-op + 1 inter-op thread), spelled out
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self._session = ort.InferenceSession(uri, so, providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        (y,) = self._session.run(["output"], {"input": x})
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("output", y)])
