"""``python -m app``: run the inference service (settings from APP_* / MODEL_REPO / REDIS_URL and flags)."""

from __future__ import annotations

from app.workers import run

if __name__ == "__main__":
    run()
