"""Shared test configuration.

Markers come from the folder (tests/unit -> ``unit`` ...). Fixtures live in ``tests/fixtures/*.py`` and are
loaded as plugins below; add a module there (and to ``pytest_plugins``) rather than growing this file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Apps built in tests serve gRPC on a free port (the default 8001 may be taken, and tests run side by side).
os.environ.setdefault("APP_GRPC_PORT", "0")

pytest_plugins = [
    "tests.fixtures.compress_run",  # compress: the real pipeline on the Criteo sample, once per session
    "tests.fixtures.chat_run",  # compress: the chatbot pipeline on the Bitext data, once per session
    "tests.fixtures.search_run",  # compress: the search ranker on the ESCI judgments, once per session
    "tests.fixtures.ctr_model",  # serving: published CTR versions
    "tests.fixtures.rec_run",  # compress: the recommendation pipeline (CI config) on Online Retail, once per session
    "tests.fixtures.servers",  # serving: redis-server and `python -m app` subprocesses
    "tests.fixtures.skips",  # no silent skips: CI fails them (GPU excepted), a local run reports them loudly
]

_FOLDER_MARKERS = {"unit", "integration", "e2e", "gpu", "reliability"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = set(Path(str(item.fspath)).parts)
        for marker in _FOLDER_MARKERS & parts:
            item.add_marker(getattr(pytest.mark, marker))
