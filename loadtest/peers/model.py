"""The one ONNX model every peer serves, laid out in each server's own repository format.

A 13 -> 512 -> 256 -> 1 MLP (ReLU, sigmoid) with seeded random weights: the size of a small ranking head, big
enough that the model is not free and small enough that request handling dominates, which is what the
benchmark compares. Input ``input`` FP32 [-1, 13], output ``output`` FP32 [-1, 1], batch axis dynamic.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MODEL_NAME = "mlp"
INPUT, OUTPUT = "input", "output"
WIDTHS = (13, 512, 256, 1)
MAX_BATCH = 64
HERE = Path(__file__).parent


def build_mlp(seed: int = 0) -> onnx.ModelProto:
    """The benchmark MLP (He-initialised, so activations stay in range)."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], INPUT
    for i, (a, b) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:], strict=True)):
        w = (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        last = i == len(WIDTHS) - 2
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"z{i}"]))
        nodes.append(helper.make_node("Sigmoid" if last else "Relu", [f"z{i}"], [OUTPUT if last else f"h{i}"]))
        x = f"h{i}"
    graph = helper.make_graph(
        nodes, MODEL_NAME, [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", WIDTHS[0]])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", WIDTHS[-1]])], initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="loadtest.peers")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def request_body(seed: int = 1) -> dict[str, Any]:
    """One-row KServe v2 JSON request, accepted unchanged by all four servers."""
    row = np.random.default_rng(seed).standard_normal(WIDTHS[0]).round(4).tolist()
    return {"inputs": [{"name": INPUT, "shape": [1, WIDTHS[0]], "datatype": "FP32", "data": row}]}


def reference_output(model: onnx.ModelProto) -> float:
    """What every server must answer to :func:`request_body` (ONNX Runtime in this process)."""
    import onnxruntime as ort

    x = np.array(request_body()["inputs"][0]["data"], dtype=np.float32).reshape(1, -1)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return float(sess.run([OUTPUT], {INPUT: x})[0].reshape(-1)[0])


def service_repo(model: onnx.ModelProto, root: Path) -> Path:
    """This service: a published ``generic`` version (manifest, sha256) of ``model`` under ``root``."""
    from app.manifest import Artifact, Gate, Lineage, Manifest, Serving, TensorSpec
    from compress.publish import file_info, publish

    def stage(d: Path, version: int) -> Manifest:
        onnx.save(model, str(d / "model.onnx"))
        return Manifest(
            name=MODEL_NAME, version=version, task="generic", created_at=datetime.now(UTC),
            inputs=[TensorSpec(name=INPUT, dtype="FP32", shape=[-1, WIDTHS[0]])],
            outputs=[TensorSpec(name=OUTPUT, dtype="FP32", shape=[-1, WIDTHS[-1]])],
            artifacts=[Artifact(format="onnx", precision="fp32", **file_info(d, "model.onnx"))],  # type: ignore[arg-type]
            metrics={"candidate": {}, "fp32": {}}, gate=Gate(passed=True, rule="benchmark model", numbers={}),
            recipe={"builder": "loadtest/peers/model.py"}, lineage=Lineage(code_version="loadtest.peers"),
            serving=Serving(max_batch_rows=MAX_BATCH, max_queue_delay_us=0, queue_cap_rows=8192,
                            warmup_batch_sizes=[1, 8, MAX_BATCH]),
            candidate="fp32",
        )  # fmt: skip

    root.mkdir(parents=True, exist_ok=True)
    publish(root, MODEL_NAME, stage)
    return root


TRITON_CONFIG = """name: "{name}"
backend: "python"
max_batch_size: {max_batch}
input [ {{ name: "{inp}" data_type: TYPE_FP32 dims: [ {d_in} ] }} ]
output [ {{ name: "{out}" data_type: TYPE_FP32 dims: [ {d_out} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""


TRITON_ORT_CONFIG = """name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch}
input [ {{ name: "{inp}" data_type: TYPE_FP32 dims: [ {d_in} ] }} ]
output [ {{ name: "{out}" data_type: TYPE_FP32 dims: [ {d_out} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "intra_op_thread_count" value: {{ string_value: "1" }} }}
parameters {{ key: "inter_op_thread_count" value: {{ string_value: "1" }} }}
"""


def triton_ort_repo(model: onnx.ModelProto, root: Path) -> Path:
    """Triton + C++ onnxruntime backend: ``<root>/mlp/config.pbtxt`` and ``1/model.onnx`` (1 ORT thread)."""
    d = root / MODEL_NAME
    (d / "1").mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(
        TRITON_ORT_CONFIG.format(
            name=MODEL_NAME, max_batch=MAX_BATCH, inp=INPUT, out=OUTPUT, d_in=WIDTHS[0], d_out=WIDTHS[-1]
        )
    )
    onnx.save(model, str(d / "1" / "model.onnx"))
    return root


def triton_repo(model: onnx.ModelProto, root: Path) -> Path:
    """Triton + python backend: ``<root>/mlp/config.pbtxt`` and ``1/{model.py, model.onnx}``."""
    d = root / MODEL_NAME
    (d / "1").mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(
        TRITON_CONFIG.format(
            name=MODEL_NAME, max_batch=MAX_BATCH, inp=INPUT, out=OUTPUT, d_in=WIDTHS[0], d_out=WIDTHS[-1]
        )
    )
    shutil.copyfile(HERE / "triton_model.py", d / "1" / "model.py")
    onnx.save(model, str(d / "1" / "model.onnx"))
    return root


def mlserver_repo(model: onnx.ModelProto, root: Path, ports: dict[str, int]) -> Path:
    """MLServer: ``settings.json`` + ``mlp/{model-settings.json, model.onnx, ort_runtime.py}``."""
    d = root / MODEL_NAME
    d.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(d / "model.onnx"))
    shutil.copyfile(HERE / "mlserver_runtime.py", d / "ort_runtime.py")
    # max_batch_time 0 = "no queue delay": MLServer's adaptive batcher only runs with a positive window
    (d / "model-settings.json").write_text(json.dumps({
        "name": MODEL_NAME, "implementation": "ort_runtime.OrtRuntime", "parameters": {"uri": "./model.onnx"},
        "max_batch_size": MAX_BATCH, "max_batch_time": 0,
    }))  # fmt: skip
    (root / "settings.json").write_text(json.dumps({
        "http_port": ports["http"], "grpc_port": ports["grpc"], "metrics_port": ports["metrics"],
        "host": "127.0.0.1", "debug": False, "parallel_workers": 0, "metrics_endpoint": None,
    }))  # fmt: skip
    return root
