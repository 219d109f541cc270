"""One log line per distinct problem every few seconds: a bad camera cannot flood the log."""

from __future__ import annotations

import time
from typing import Any


class LogThrottle:
    """``log(level, text)`` passes ``text`` to ``logger.<level>`` at most once per ``period_s``
    seconds per distinct text (at most ``max_texts`` texts remembered)."""

    def __init__(self, logger: Any, period_s: float = 5.0, max_texts: int = 256):
        self._logger, self._period, self._max = logger, period_s, max_texts
        self._last: dict[str, float] = {}  # text -> monotonic time it was last logged

    def log(self, level: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last.get(text, -1e9) < self._period:
            return
        if len(self._last) > self._max:
            self._last.clear()
        self._last[text] = now
        getattr(self._logger, level)(text)
