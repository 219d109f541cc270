"""Track-id recycling: a bounded id space handed out least-recently-released first.

Published track ids must fit the output encodings for any run length (``~/instance_ids`` is
16UC1, ``~/panoptic`` is ``semantic * label_divisor + id`` in int32), so ids come from a fixed
space of ``size`` values ``first .. first + size - 1`` instead of an unbounded counter.

Policy (FIFO free list, a ring buffer of ``size`` int32):
  * ``acquire(k)`` takes the ``k`` ids at the head of the free list: first the never-used ids in
    increasing order, then released ids in the order they were released (least recently released
    first);
  * ``release(ids)`` appends ids at the tail; an id is released only when its track leaves the
    tracker's memory, so an id held by a live track (including a track the tracker still
    remembers but did not see in the last frames) is never handed out;
  * guarantee: an id released at some moment is handed out again only after every id that was
    free at that moment has been handed out, i.e. after at least ``size - L`` new tracks, where
    L is the largest number of ids held at once in between. With ``size`` = 65535 and at most a
    few hundred remembered tracks, two tracks share an id only if ~65,000 other tracks started in
    between (about 36 minutes at 30 new tracks per second).

``reset()`` (a new sequence) makes every id free again, in increasing order.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MAX_TRACK_ID: int = 65535  # the largest id ~/instance_ids (16UC1) can carry; 0 means "no track"


class IdPoolExhausted(RuntimeError):
    """Every id of the pool is held by a live track."""


class IdPool:
    """Ids ``first .. first + size - 1``; least recently released first (see module docstring)."""

    def __init__(self, size: int = MAX_TRACK_ID, first: int = 1) -> None:
        if size < 1:
            raise ValueError(f"id pool size must be >= 1, got {size}")
        self.size, self.first = int(size), int(first)
        self._ring = np.empty(self.size, np.int64)  # free ids, circular: [head, head + free)
        self._held = np.zeros(self.size, bool)  # held[id - first]
        self.reset()

    def reset(self) -> None:
        """Every id free again, handed out in increasing order."""
        self._ring[:] = np.arange(self.first, self.first + self.size)
        self._held[:] = False
        self._head = 0
        self.free = self.size  # number of free ids

    @property
    def held(self) -> int:
        return self.size - self.free

    def acquire(self, k: int = 1) -> np.ndarray:
        """[k] int64 ids, least recently released first. Raises ``IdPoolExhausted``."""
        if k < 0:
            raise ValueError(f"cannot acquire {k} ids")
        if k > self.free:
            raise IdPoolExhausted(
                f"{k} new track ids requested but only {self.free} of "
                f"{self.size} are free (ids {self.first}..."
                f"{self.first + self.size - 1} held by live tracks)"
            )
        idx = (self._head + np.arange(k)) % self.size
        ids = self._ring[idx].copy()
        self._head = (self._head + k) % self.size
        self.free -= k
        self._held[ids - self.first] = True
        return ids

    def release(self, ids: Iterable[int]) -> None:
        """Return ids to the tail of the free list. Raises ``ValueError`` for an id not held."""
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, np.int64)
        arr = arr.reshape(-1)
        if not arr.size:
            return
        off = arr - self.first
        bad = (off < 0) | (off >= self.size)
        if bad.any() or not self._held[off].all() or np.unique(off).size != off.size:
            raise ValueError(
                f"release of ids {arr.tolist()} that are not all held (pool "
                f"{self.first}..{self.first + self.size - 1})"
            )
        tail = (self._head + self.free + np.arange(arr.size)) % self.size
        self._ring[tail] = arr
        self.free += arr.size
        self._held[off] = False

    def is_held(self, track_id: int) -> bool:
        off = int(track_id) - self.first
        return 0 <= off < self.size and bool(self._held[off])
