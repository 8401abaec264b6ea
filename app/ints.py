"""One strict parser for the integers clients and the file system hand us (headers, path segments, folders).

``str.isdigit()`` accepts '²' and Arabic-Indic digits and ``int()`` then fails or reads them as numbers;
5,000-digit values cost quadratic time (or raise). Here only 1-18 ASCII digits pass, within explicit bounds.
"""

from __future__ import annotations

import re

_ASCII_INT = re.compile(rb"[0-9]{1,18}")
MAX_INT64 = (1 << 63) - 1


def parse_ascii_int(raw: str | bytes, low: int = 0, high: int = MAX_INT64) -> int | None:
    """``raw`` as an int if it is 1-18 ASCII digits (no sign, no spaces) with ``low <= value <= high``, else None."""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    if _ASCII_INT.fullmatch(data) is None:
        return None
    value = int(data)
    return value if low <= value <= high else None
