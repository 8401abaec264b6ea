"""gRPC transport: KServe v2 ``inference.GRPCInferenceService``, the ``shopinfer.v1.TaskService`` task RPCs,
``grpc.health.v1`` and server reflection, served by ``grpc.aio`` in the HTTP server's process and event loop
over the same :class:`~app.service.InferenceService` (so an HTTP and a gRPC request can share one batch).

Modules: ``server`` (build/start/stop), ``kserve`` and ``tasks`` (servicers), ``tensors`` (proto <-> numpy),
``task_messages`` (proto <-> task request/response dicts), ``status`` (error -> gRPC status), ``calls``
(deadline/priority/auth from metadata), ``decode`` (unparsable request bytes -> INVALID_ARGUMENT), ``generated`` (checked-in stubs; ``python -m app.grpc.generate``).
"""
