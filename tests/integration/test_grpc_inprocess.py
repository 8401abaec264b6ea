"""gRPC inside the app's own lifespan and event loop: bound port on app.state, the Triton-style model config served
over gRPC and HTTP alike, request bytes that do not parse, and the switch that turns gRPC off."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc import aio

from app.grpc.generated import grpc_service_pb2 as pb
from app.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from app.model_config import model_config_json
from tests.fixtures.asgi import running_app
from tests.fixtures.checks import expect_status


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
        # the same document over HTTP (Triton's GET /v2/models/{model}/config: perf_analyzer -i http reads it)
        for path in ("/v2/models/ad-ctr/config", "/v2/models/ad-ctr/versions/1/config"):
            r = await t.client.get(path)
            assert r.status_code == 200 and r.json() == doc, r.text
        for path, status, code in [("/v2/models/nope/config", 404, "model_not_found"),
                                   ("/v2/models/ad-ctr/versions/7/config", 404, "model_not_found"),
                                   ("/v2/models/ad-ctr/versions/x/config", 400, "invalid_version")]:  # fmt: skip
            r = await t.client.get(path)
            assert (r.status_code, r.json()["code"]) == (status, code), r.text  # the v2 error body


async def test_grpc_can_be_turned_off(ctr_repo: Path) -> None:
    async with running_app(ctr_repo, grpc_enabled=False) as t:
        assert t.app.state.grpc_port is None
        expect_status(await t.client.get("/v2/health/ready"), 200)


async def test_request_bytes_that_do_not_parse_are_invalid_argument_with_a_code(ctr_repo: Path) -> None:
    bad_utf8 = b"\x12\x04\x0a\x02\xff\xfe"  # ScoreAdsRequest.candidates[0].ad_id = b"\xff\xfe": not UTF-8
    truncated = b"\x0a\x05ad"  # ModelInferRequest.model_name says 5 bytes, 2 follow
    async with (
        running_app(ctr_repo, grpc_port=0) as t,
        aio.insecure_channel(f"127.0.0.1:{t.app.state.grpc_port}") as channel,
    ):
        for method, payload in [("/shopinfer.v1.TaskService/ScoreAds", bad_utf8),
                                ("/inference.GRPCInferenceService/ModelInfer", truncated)]:  # fmt: skip
            call = channel.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)
            with pytest.raises(aio.AioRpcError) as err:
                await call(payload, timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            assert dict(err.value.trailing_metadata() or ())["shopinfer-error-code"] == "invalid_message"
            assert method.rsplit("/", 1)[1] in (err.value.details() or "")
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert (await stub.ServerReady(pb.ServerReadyRequest(), timeout=5)).ready  # the server is unharmed
