"""Progress bars for long steps; quiet when stderr is not a terminal or COMPRESS_PROGRESS=0."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress(it: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    if os.environ.get("COMPRESS_PROGRESS", "1") == "0" or not sys.stderr.isatty():
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, leave=False)
