"""HTTP transport: thin FastAPI routes over :class:`app.service.InferenceService`."""
