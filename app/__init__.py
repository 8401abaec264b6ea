"""Online inference service: hot-loading model registry, dynamic batching, KServe v2 and task endpoints.

Importing ``app`` (or ``app.manifest`` / ``app.tasks``) pulls in neither FastAPI nor ONNX Runtime; the heavy
pieces are imported by :mod:`app.main` when a server is actually built.
"""
