"""Availability marks on every backend: seen by another process's reader at once, and Redis loss fails safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.tasks.recommend.availability import RedisAvailability, SharedFileAvailability
from app.tasks.recommend.store import StoreUnavailable
from tests.fixtures.servers import RedisServer


def test_redis_marks_are_seen_by_another_reader_and_survive_redis_loss(redis_server: RedisServer) -> None:
    writer, reader = RedisAvailability(redis_server.url), RedisAvailability(redis_server.url)
    assert writer.mark(["a", "b"], available=False) == 2
    assert reader.unavailable() == {"a", "b"}, reader.unavailable()
    assert writer.mark(["a"], available=True) == 1
    assert reader.unavailable() == {"b"}, reader.unavailable()
    redis_server.kill()
    assert reader.unavailable() == {"b"}, "a dead Redis keeps the last set (stale, still filtering)"
    with pytest.raises(StoreUnavailable):
        writer.mark(["c"], available=False)
    writer.close()
    reader.close()


def test_pod_file_marks_are_seen_by_another_connection(tmp_path: Path) -> None:
    a, b = SharedFileAvailability(tmp_path / "av.sqlite"), SharedFileAvailability(tmp_path / "av.sqlite")
    first = b.unavailable()
    assert a.mark(["x", "y"], available=False) == 2
    assert b.unavailable() == {"x", "y"} and b.unavailable() is b.unavailable(), "re-read only when it changed"
    assert first == frozenset()
    a.mark(["x", "y"], available=True)
    assert b.unavailable() == frozenset(), b.unavailable()
    a.close()
    b.close()
