"""The ``grpc.aio`` server: built and started in the app's lifespan, in uvicorn's event loop, on its own port.

It serves :class:`~app.grpc.kserve.KServeServicer`, :class:`~app.grpc.tasks.TaskServicer`, ``grpc.health.v1``
(``""`` and the API services SERVING only while every required model is ready; ``liveness`` while the process is
live) and server reflection. Stopping
flips health to NOT_SERVING, refuses new calls and lets in-flight ones finish for up to the drain timeout.

Typical usage (see :mod:`app.lifespan`)::

    server = GrpcServer(service)
    port = await server.start()        # APP_GRPC_PORT=0 binds a free port; the bound one is returned
    ...
    await server.stop(grace=settings.drain_timeout_s)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from app.grpc.decode import MalformedRequests
from app.grpc.generated import POOL
from app.grpc.generated import grpc_service_pb2 as kserve_pb
from app.grpc.generated import grpc_service_pb2_grpc as kserve_grpc
from app.grpc.generated.shopinfer.v1 import tasks_pb2 as tasks_pb
from app.grpc.generated.shopinfer.v1 import tasks_pb2_grpc as tasks_grpc
from app.grpc.kserve import KServeServicer, server_ready
from app.grpc.tasks import TaskServicer
from app.pod import pod_live, worker_count
from app.service import InferenceService
from app.supervisor import HEALTH

LOG = logging.getLogger("app.grpc")
KSERVE_SERVICE = kserve_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
TASK_SERVICE = tasks_pb.DESCRIPTOR.services_by_name["TaskService"].full_name
HEALTH_REFRESH_S = 0.5
LIVENESS = "liveness"
"""Health service name that is SERVING while the process is live (kubelet gRPC liveness probe); "" and the API
services are SERVING only while ready (readiness probe)."""


def _share_with_reflection(*files: Any) -> None:
    """Health and reflection live in protobuf's default pool; copy their files into ours so reflection can
    describe every service it lists."""
    for fd in files:
        with contextlib.suppress(KeyError):
            POOL.FindFileByName(fd.name)  # type: ignore[no-untyped-call]
            continue
        POOL.AddSerializedFile(fd.serialized_pb)  # type: ignore[no-untyped-call]


class ReadinessHealth(health.aio.HealthServicer):  # type: ignore[misc]  # grpc_health ships no types
    """``grpc.health.v1`` with live answers: each service name has a predicate, SERVING exactly while it holds.
    Refreshed on every Check and periodically for Watch streams."""

    def __init__(self, checks: dict[str, Callable[[], bool]]) -> None:
        super().__init__()
        self._checks = checks
        self._shutting_down = False

    async def refresh(self) -> None:
        if self._shutting_down:
            return
        for name, check in self._checks.items():
            ok = check()
            await self.set(
                name, health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
            )

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        await self.refresh()
        return await super().Check(request, context)

    async def shutdown(self) -> None:
        self._shutting_down = True
        await self.enter_graceful_shutdown()


class GrpcServer:
    """One per app; :meth:`start` / :meth:`stop` from the lifespan."""

    def __init__(self, svc: InferenceService) -> None:
        self.svc = svc
        self.port: int | None = None
        self._server: aio.Server | None = None
        self._health: ReadinessHealth | None = None
        self._refresher: asyncio.Task[None] | None = None

    def _ready(self) -> bool:
        return HEALTH.live and server_ready(self.svc)

    def _live(self) -> bool:
        return not pod_live(self.svc.settings.worker_hang_timeout_s)

    async def start(self) -> int:
        """Bind ``APP_HOST:APP_GRPC_PORT`` and serve; returns the bound port (a free one for port 0)."""
        s = self.svc.settings
        limit = s.grpc_max_message_bytes
        server = aio.server(interceptors=[MalformedRequests([KSERVE_SERVICE, TASK_SERVICE])], options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1 if worker_count() > 1 else 0),  # workers share the port; alone, a clash is an error
        ])  # fmt: skip
        kserve_grpc.add_GRPCInferenceServiceServicer_to_server(KServeServicer(self.svc), server)  # type: ignore[no-untyped-call]
        tasks = TaskServicer(self.svc)
        tasks_grpc.add_TaskServiceServicer_to_server(tasks, server)  # type: ignore[no-untyped-call]
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        ready = self._ready
        self._health = ReadinessHealth({"": ready, KSERVE_SERVICE: ready, TASK_SERVICE: ready, LIVENESS: self._live})
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        _share_with_reflection(health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR)
        names = [KSERVE_SERVICE, TASK_SERVICE, health_name, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server, pool=POOL)
        address = f"{s.host}:{s.grpc_port}"
        port: int = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"gRPC could not bind {address}")
        await server.start()
        await self._health.refresh()
        self._server, self.port = server, port
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop(), name="grpc-health")
        LOG.info(
            "gRPC listening on %s:%d (KServe v2 + %s; max message %d bytes)",
            s.host,
            port,
            ", ".join(tasks.served) or "no task RPCs",
            limit,
        )
        return port

    async def _refresh_loop(self) -> None:
        assert self._health is not None
        while True:
            await asyncio.sleep(HEALTH_REFRESH_S)
            await self._health.refresh()

    async def stop(self, grace: float) -> None:
        """NOT_SERVING at once, refuse new calls, give in-flight calls up to ``grace`` seconds, then cancel them."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._health is not None:
            await self._health.shutdown()
        if self._server is not None:
            LOG.info("gRPC draining (grace %.0fs)", grace)
            await self._server.stop(grace)
            LOG.info("gRPC stopped")
        self._server = None
