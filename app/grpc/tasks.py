"""``shopinfer.v1.TaskService``: each RPC runs its REST twin's route through ``InferenceService.run_task``.

Same schema, limits, batcher and error codes as ``POST /v1/...``; metrics count it as ``grpc_<endpoint>``.
An RPC whose task is not installed answers UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any

from google.protobuf.message import Message
from grpc import StatusCode, aio

from app import tracing
from app.errors import ServiceError
from app.grpc import calls, status
from app.grpc.generated.shopinfer.v1 import tasks_pb2_grpc as pb_grpc
from app.grpc.task_messages import TASK_RPCS, TaskRpc, validate
from app.service import InferenceService
from app.tasks.base import Route
from app.tasks.registry import all_routes

LOG = logging.getLogger("app.grpc")
Method = Callable[[Any, aio.ServicerContext], Awaitable[Message]]


class TaskServicer(pb_grpc.TaskServiceServicer):
    """Built with the installed task routes; RPCs are bound per instance from :data:`TASK_RPCS`."""

    def __init__(self, svc: InferenceService, routes: list[Route[Any]] | None = None) -> None:
        self.svc = svc
        by_path = {r.path: r for r in (all_routes() if routes is None else routes)}
        self.served: list[str] = []
        for rpc in TASK_RPCS:
            route = by_path.pop(rpc.path, None)
            if route is not None:
                setattr(self, rpc.method, self._method(rpc, route))
                self.served.append(rpc.method)
        if by_path:
            LOG.info("task routes without a gRPC method (add them to shopinfer/v1/tasks.proto): %s", sorted(by_path))

    def _method(self, rpc: TaskRpc, route: Route[Any]) -> Method:
        svc = self.svc
        endpoint = f"grpc_{route.endpoint}"
        span_name = f"grpc shopinfer.v1.Tasks/{rpc.method}"

        async def call(request: Any, context: aio.ServicerContext) -> Message:
            meta = calls.metadata(context)
            rid = calls.begin_call(context, meta)
            trace = tracing.start_request(span_name, meta, rid) if tracing.ENABLED else None
            try:
                with svc.observe(endpoint, svc.model_for(route)) as obs:
                    opts = calls.request_options(context, meta, svc.settings.default_timeout_ms, rid)
                    with svc.admit(obs.model) if route.needs_model else nullcontext():
                        req = validate(route.request, rpc.to_request(request))
                        if tracing.ENABLED:
                            tracing.mark("parse")
                        result = await svc.run_task(route, req, opts, obs)
                if route.needs_model:
                    calls.name_version(context, rid, obs.version)
                return rpc.from_response(result)
            except ServiceError as e:
                if trace is not None:
                    tracing.end_request(trace, status.grpc_code(e).name, e.code)
                    trace = None
                await status.abort(context, e)
            except Exception as e:  # noqa: BLE001 - any other failure is a generic INTERNAL, never a traceback
                if trace is not None:
                    tracing.end_request(trace, "INTERNAL", repr(e))
                    trace = None
                await status.abort_internal(context, e, rpc.method, rid)
            finally:
                if trace is not None:
                    tracing.end_request(trace, "OK")

        call.__name__ = rpc.method
        return call

    async def _missing(self, context: aio.ServicerContext, method: str) -> Message:
        await context.abort(StatusCode.UNIMPLEMENTED, f"{method}: its task is not installed on this server")
        raise AssertionError("unreachable")  # pragma: no cover

    async def ScoreAds(self, request: Any, context: aio.ServicerContext) -> Message:
        return await self._missing(context, "ScoreAds")

    async def Chat(self, request: Any, context: aio.ServicerContext) -> Message:
        return await self._missing(context, "Chat")

    async def Recommend(self, request: Any, context: aio.ServicerContext) -> Message:
        return await self._missing(context, "Recommend")

    async def RecordEvent(self, request: Any, context: aio.ServicerContext) -> Message:
        return await self._missing(context, "RecordEvent")

    async def RankSearch(self, request: Any, context: aio.ServicerContext) -> Message:
        return await self._missing(context, "RankSearch")

    async def SetAvailability(self, request: Any, context: aio.ServicerContext) -> Message:
        return await self._missing(context, "SetAvailability")
