"""The ``model-published`` notice: tells serving replicas to rescan now instead of at their next interval.

Sent by :func:`compress.publish.publish` after the rename when ``APP_REDIS_URL`` or ``REDIS_URL`` is set (the
service's rule: the ``APP_`` name wins). The repository stays the
source of truth: a lost notice costs one rescan interval, so failures here warn and never fail a publish.
"""

from __future__ import annotations

import json
import logging

from compress.settings import DEFAULT_CHANNEL, compress_settings

LOG = logging.getLogger("compress")
__all__ = ["DEFAULT_CHANNEL", "notify_published"]


def notify_published(model: str, version: int, *, redis_url: str | None = None, channel: str | None = None) -> bool:
    """Publish ``{"model", "version"}`` on the notice channel; True when Redis took it."""
    settings = compress_settings()
    url = redis_url if redis_url is not None else settings.redis_url
    if not url:
        return False
    chan = channel or settings.redis_channel
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
        try:
            receivers = client.publish(chan, json.dumps({"model": model, "version": version}))
        finally:
            client.close()
    except Exception as e:  # noqa: BLE001 - redis is optional; the periodic rescan still finds the version
        LOG.warning("published %s/%d but could not send the %r notice to %s: %r", model, version, chan, url, e)
        return False
    LOG.info("sent %r notice for %s/%d to %d listener(s)", chan, model, version, receivers)
    return True
