"""Pydantic wire models of the task endpoints (the v2 protocol is decoded by :mod:`app.protocol`)."""
