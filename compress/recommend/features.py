"""``python -m compress features load CONFIG``: fill the online feature store from the log before the test window."""

from __future__ import annotations

from app.tasks.recommend.store import Event, RedisStore
from compress.errors import ConfigError
from compress.recommend.config import RecConfig


def load_features(cfg: RecConfig, redis_url: str | None) -> int:
    """Each customer's recent items (newest first) as ``purchase`` events into Redis; returns the customer count.

    The in-process store needs no loader: a served version seeds it from its ``histories`` aux file.
    """
    from compress.recommend.task import load_split

    if not redis_url:
        raise ConfigError(
            "no Redis URL: pass --redis-url or set REDIS_URL (the in-process store seeds itself "
            "from the served version's histories.json)"
        )
    split = load_split(cfg)
    r = cfg.retrieval
    hist = {u: [Event(split.items[i], "purchase") for i in h] for u, h in split.histories(split.test_start).items()}
    store = RedisStore(redis_url, r.history_cap, r.history_ttl_s, timeout_s=5.0)
    try:
        return store.load(hist)
    finally:
        store.close()
