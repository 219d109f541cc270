"""Exact integer counting helpers shared by STQ and VPQ.

Panoptic ids are ``semantic * label_divisor + instance`` (DESIGN.md §3.3). Everything here works
on int64 so that combined keys (``a * offset + b``) never overflow; inputs of any integer dtype are
promoted first (metrics.md pitfall P9).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

_INT64_MAX = np.iinfo(np.int64).max


def as_id_array(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as an int64 array of panoptic ids, refusing floats and negative ids."""
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer panoptic ids, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.size and a.min() < 0:
        raise ValueError(f"{name} holds negative panoptic ids (min {int(a.min())}); expected >= 0")
    return a


def check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate one GT/prediction pair of equal shape; returns both as int64."""
    gt = as_id_array(gt, "gt")
    pred = as_id_array(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred shapes differ: gt {gt.shape} vs pred {pred.shape}")
    if gt.ndim not in (2, 3):
        raise ValueError(
            f"expected a frame [H,W] or a clip [T,H,W] of panoptic ids, got shape {gt.shape}"
        )
    return gt, pred


class LabelSpace:
    """Class bookkeeping shared by the metrics.

    ``num_classes`` valid semantic ids are ``0..num_classes-1``; ``ignore_label`` marks void and
    may be inside or outside that range (deeplab2 semantics). ``things`` lists the classes that
    carry instances. ``offset`` exceeds every valid panoptic id + 1, so pair keys
    ``a * offset + b`` are unique.
    """

    def __init__(
        self, num_classes: int, things: Iterable[int], label_divisor: int, ignore_label: int
    ):
        num_classes, label_divisor, ignore_label = (
            int(num_classes),
            int(label_divisor),
            int(ignore_label),
        )
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if label_divisor <= 0:
            raise ValueError(f"label_divisor must be positive, got {label_divisor}")
        if ignore_label < 0:
            raise ValueError(f"ignore_label must be >= 0, got {ignore_label}")
        things_t = tuple(sorted({int(t) for t in things}))
        bad = [t for t in things_t if not 0 <= t < num_classes or t == ignore_label]
        if bad:
            raise ValueError(
                f"thing classes {bad} are outside 0..{num_classes - 1} or equal the ignore label"
            )
        self.num_classes = num_classes
        self.things = things_t
        self.label_divisor = label_divisor
        self.ignore_label = ignore_label
        self.num_semantic = max(num_classes, ignore_label + 1)  # semantic ids that may appear
        self.offset = (self.num_semantic * label_divisor) + 1  # > every id and every id + 1
        if self.offset > 0 and self.offset > int(np.sqrt(_INT64_MAX)) - 1:
            raise OverflowError(
                f"num_classes={num_classes}, ignore_label={ignore_label}, "
                f"label_divisor={label_divisor} "
                "give panoptic ids too large for exact int64 pair keys"
            )
        self.is_thing = np.zeros(self.num_semantic, dtype=bool)
        self.is_thing[list(things_t)] = True
        # classes that are scored (the ignore label is never a class even when < num_classes)
        self.categories = np.array(
            [c for c in range(num_classes) if c != ignore_label], dtype=np.int64
        )

    def semantic(self, ids: np.ndarray, name: str) -> np.ndarray:
        """Semantic part of int64 ids, checked to be a class or the ignore label."""
        sem = ids // self.label_divisor
        if sem.size:
            bad = (sem >= self.num_classes) & (sem != self.ignore_label)
            if bad.any():
                vals = np.unique(sem[bad])[:10].tolist()
                raise ValueError(
                    f"{name} holds semantic ids {vals} (label_divisor {self.label_divisor}); "
                    "expected "
                    f"0..{self.num_classes - 1} or the ignore label {self.ignore_label}"
                )
        return sem


def unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique int64 keys and their int64 counts."""
    if keys.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k, c = np.unique(keys.ravel(), return_counts=True)
    return k.astype(np.int64, copy=False), c.astype(np.int64, copy=False)


def sum_by_key(
    keys: Sequence[np.ndarray], counts: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Merge several (keys, counts) tables into one sorted table with summed int64 counts."""
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = np.concatenate(keys)
    c = np.concatenate(counts)
    if k.size == 0:
        return k.astype(np.int64), c.astype(np.int64)
    uk, inv = np.unique(k, return_inverse=True)
    total = np.zeros(uk.size, dtype=np.int64)
    np.add.at(total, inv.ravel(), c)
    return uk, total


def lookup(table_keys: np.ndarray, table_values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``table_values`` at ``keys``; every key must be present in the sorted ``table_keys``."""
    idx = np.searchsorted(table_keys, keys)
    return table_values[idx]


class Tally:
    """A growing multiset of int64 keys, stored as (sorted keys, counts) and compacted lazily.

    Memory is bounded by the number of distinct keys (plus up to ``compact_every`` pending chunks).
    """

    def __init__(self, compact_every: int = 32):
        self._keys: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._compact_every = compact_every

    def add(self, keys: np.ndarray, counts: np.ndarray | None = None) -> None:
        if counts is None:
            keys, counts = unique_counts(keys)
        self._keys.append(keys)
        self._counts.append(counts)
        if len(self._keys) > self._compact_every:
            self.table()

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        k, c = sum_by_key(self._keys, self._counts)
        self._keys, self._counts = [k], [c]
        return k, c
