"""Rate-limited logging for events a client can trigger at will (bad inputs): one line per interval, with a
count of what was suppressed, so a flood of bad requests cannot flood the log or slow the event loop."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """``note(message)`` logs at most once per ``interval_s`` (per logger), counting the notes in between."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0, level: int = logging.WARNING) -> None:
        self.logger, self.interval_s, self.level = logger, interval_s, level
        self._next = 0.0
        self._suppressed = 0

    def note(self, message: str) -> bool:
        """Log ``message`` now if the interval has passed (returns True), else count it."""
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return False
        extra = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        self.logger.log(self.level, "%s%s", message, extra)
        self._suppressed = 0
        self._next = now + self.interval_s
        return True
