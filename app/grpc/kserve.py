"""``inference.GRPCInferenceService``: the KServe v2 / Open Inference Protocol over gRPC (plus Triton's
ModelConfig and repository extensions), on the same data plane as ``/v2/...`` over HTTP.

Every RPC maps the service's coded errors through :mod:`app.grpc.status`; inference is counted and timed under
``endpoint="grpc_v2_infer"``.
"""

from __future__ import annotations

from importlib import metadata

from google.protobuf import json_format
from grpc import aio

from app import tracing
from app.errors import ServiceError
from app.grpc import calls, status
from app.grpc.generated import grpc_service_pb2 as pb
from app.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from app.grpc.generated import model_config_pb2 as config_pb
from app.grpc.tensors import decode_infer_request, encode_infer_response
from app.model_config import model_config_json
from app.pod import broadcast, pod_live
from app.service import InferenceService

EXTENSIONS = ["model_repository", "model_configuration", "parameters"]
INFER_ENDPOINT = "grpc_v2_infer"


def _package_version() -> str:
    try:
        return metadata.version("shopinfer")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def server_ready(svc: InferenceService) -> bool:
    """Every required model has a READY version (the rule of ``/v2/health/ready``)."""
    return svc.registry.is_ready()


def model_config(svc: InferenceService, model: str, version: int | None) -> config_pb.ModelConfig:
    """The batching-relevant part of Triton's model config (:mod:`app.model_config`) as its protobuf message."""
    return json_format.ParseDict(model_config_json(svc, model, version), config_pb.ModelConfig())


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Thin adapters: decode the message, call the service, encode; errors become gRPC statuses."""

    def __init__(self, svc: InferenceService) -> None:
        self.svc = svc
        self.version = _package_version()

    async def ServerLive(self, request: pb.ServerLiveRequest, context: aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=not pod_live(self.svc.settings.worker_hang_timeout_s))

    async def ServerReady(self, request: pb.ServerReadyRequest, context: aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=server_ready(self.svc))

    async def ModelReady(self, request: pb.ModelReadyRequest, context: aio.ServicerContext) -> pb.ModelReadyResponse:
        try:
            return pb.ModelReadyResponse(ready=self.svc.model_ready(request.name, calls.parse_version(request.version)))
        except ServiceError as e:
            await status.abort(context, e)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        name = self.svc.settings.server_name
        return pb.ServerMetadataResponse(name=name, version=self.version, extensions=EXTENSIONS)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        try:
            meta = self.svc.model_metadata(request.name, calls.parse_version(request.version))
        except ServiceError as e:
            await status.abort(context, e)
        resp = pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"])
        for t in meta["inputs"]:
            resp.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        for t in meta["outputs"]:
            resp.outputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return resp

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: aio.ServicerContext) -> pb.ModelConfigResponse:
        try:
            return pb.ModelConfigResponse(
                config=model_config(self.svc, request.name, calls.parse_version(request.version))
            )
        except ServiceError as e:
            await status.abort(context, e)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: aio.ServicerContext) -> pb.ModelInferResponse:
        svc = self.svc
        meta = calls.metadata(context)
        rid = calls.begin_call(context, meta)
        trace = (
            tracing.start_request("grpc inference.GRPCInferenceService/ModelInfer", meta, rid)
            if tracing.ENABLED
            else None
        )
        try:
            with svc.observe(INFER_ENDPOINT, request.model_name) as obs:
                opts = calls.request_options(context, meta, svc.settings.default_timeout_ms, rid)
                version = calls.parse_version(request.model_version)
                with svc.admit(request.model_name, version):
                    req = decode_infer_request(request)
                    if tracing.ENABLED:
                        tracing.mark("parse")
                    mv, outputs = await svc.infer(request.model_name, version, req, opts, obs)
                response = encode_infer_response(request.model_name, mv.version, outputs, req)
                calls.name_version(context, rid, obs.version)
                if tracing.ENABLED:
                    tracing.mark("postprocess")
                return response
        except ServiceError as e:
            if trace is not None:
                tracing.end_request(trace, status.grpc_code(e).name, e.code)
                trace = None
            await status.abort(context, e)
        except Exception as e:  # noqa: BLE001 - any other failure is a generic INTERNAL, never a traceback
            if trace is not None:
                tracing.end_request(trace, "INTERNAL", repr(e))
                trace = None
            await status.abort_internal(context, e, "ModelInfer", rid)
        finally:
            if trace is not None:
                tracing.end_request(trace, "OK")

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        resp = pb.RepositoryIndexResponse()
        for e in self.svc.repository_index(request.ready):
            resp.models.add(name=e["name"], version=e["version"], state=e["state"], reason=e["reason"])
        return resp

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        try:
            calls.require_admin(self.svc.settings.admin_token, calls.metadata(context))
            await self.svc.registry.load_model(request.model_name)
        except ServiceError as e:
            await status.abort(context, e)
        broadcast("load", request.model_name)  # sibling worker processes repeat it, as after the HTTP call
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        try:
            calls.require_admin(self.svc.settings.admin_token, calls.metadata(context))
            await self.svc.registry.unload_model(request.model_name)
        except ServiceError as e:
            await status.abort(context, e)
        broadcast("unload", request.model_name)  # sibling worker processes repeat it, as after the HTTP call
        return pb.RepositoryModelUnloadResponse()
