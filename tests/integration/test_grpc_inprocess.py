"""gRPC inside the app's own lifespan and event loop: bound port on app.state, the Triton-style model config the
HTTP API can serve, and the switch that turns gRPC off."""

from __future__ import annotations

from pathlib import Path

from grpc import aio

from app.grpc.generated import grpc_service_pb2 as pb
from app.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from app.grpc.kserve import model_config_json
from tests.fixtures.asgi import running_app


async def test_grpc_serves_from_the_apps_event_loop_and_describes_the_model(ctr_repo: Path) -> None:
    async with running_app(ctr_repo, grpc_port=0) as t:
        port = t.app.state.grpc_port
        assert isinstance(port, int) and port > 0
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert (await stub.ServerReady(pb.ServerReadyRequest(), timeout=5)).ready
            config = (await stub.ModelConfig(pb.ModelConfigRequest(name="ad-ctr"), timeout=5)).config
        doc = model_config_json(t.app.state.service, "ad-ctr", None)
        assert doc == {
            "name": "ad-ctr", "platform": "onnxruntime_onnx", "backend": "onnxruntime", "max_batch_size": 256,
            "input": [{"name": "dense", "data_type": "TYPE_FP32", "dims": [13]},
                      {"name": "sparse", "data_type": "TYPE_INT64", "dims": [26]}],
            "output": [{"name": "pctr", "data_type": "TYPE_FP32", "dims": [1]}],
            "dynamic_batching": {"max_queue_delay_microseconds": 0},
        }  # fmt: skip
        assert config.max_batch_size == doc["max_batch_size"] and [i.name for i in config.input] == ["dense", "sparse"]


async def test_grpc_can_be_turned_off(ctr_repo: Path) -> None:
    async with running_app(ctr_repo, grpc_enabled=False) as t:
        assert t.app.state.grpc_port is None
        assert (await t.client.get("/v2/health/ready")).status_code == 200
