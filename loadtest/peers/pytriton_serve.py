"""PyTriton server for the benchmark MLP (run with the pytriton venv's python, not imported by the project).

``python pytriton_serve.py MODEL.onnx --http-port P --grpc-port G --metrics-port M``
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch  # type: ignore[import-not-found]
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # type: ignore[import-not-found]
from pytriton.triton import Triton, TritonConfig  # type: ignore[import-not-found]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--max-batch", type=int, default=64)
    args = p.parse_args()
    # runs in the peer's own venv, where this repository is not importable: the settings of
    # app.runtime.ort_options.session_options() (1 intra-op + 1 inter-op thread), spelled out
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])

    @batch  # type: ignore[untyped-decorator]
    def infer(**inputs: np.ndarray) -> dict[str, Any]:
        (y,) = session.run(["output"], {"input": inputs["input"]})
        return {"output": y}

    config = TritonConfig(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        http_address="127.0.0.1",
        grpc_address="127.0.0.1",
        log_verbose=0,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name="mlp", infer_func=infer,
            inputs=[Tensor(name="input", dtype=np.float32, shape=(13,))],
            outputs=[Tensor(name="output", dtype=np.float32, shape=(1,))],
            config=ModelConfig(max_batch_size=args.max_batch, batcher=DynamicBatcher(max_queue_delay_microseconds=0)),
        )  # fmt: skip
        triton.serve()


if __name__ == "__main__":
    main()
