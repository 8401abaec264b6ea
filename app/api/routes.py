"""Route registration: flat routes on the app (nested routers cost a match walk per request), hot paths first."""

from __future__ import annotations

from fastapi import FastAPI

from app.api import health, tasks, v2


def install_routes(app: FastAPI) -> None:
    for module in (tasks, v2, health):
        module.register(app)
