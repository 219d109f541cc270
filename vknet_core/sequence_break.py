"""When a camera stream starts a new sequence: its stamp goes back or its resolution changes.

The live node and the offline bag tool apply this rule to every frame, in order, so a recorded
drive resets its tracks exactly where the node does (bag loop, simulator restart, camera
reconfigured)::

    breaks = SequenceBreaks()
    for stamp_ns, rgb in stream:                     # stamp: header stamp in ns, or None
        reason = breaks.check(stamp_ns, rgb.shape[:2])
        if reason is not None:                       # "time jumped back by 6.000 s", ...
            pipeline.reset()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class SequenceBreaks:
    """The last frame's stamp (ns) and (H, W); ``check`` compares each new frame with them."""

    last_stamp_ns: Optional[int] = None
    last_hw: Optional[tuple[int, int]] = None

    def check(self, stamp_ns: Optional[int], hw: tuple[int, int]) -> Optional[str]:
        """Record this frame; return why the tracks must reset before it, or None.

        ``stamp_ns`` None (a video file, an image folder) only checks the resolution. An equal
        stamp is not a jump back.
        """
        hw = (int(hw[0]), int(hw[1]))
        reason, last = None, self.last_stamp_ns
        if stamp_ns is not None and last is not None and stamp_ns < last:
            reason = f"time jumped back by {(last - stamp_ns) / 1e9:.3f} s"
        elif self.last_hw is not None and hw != self.last_hw:
            reason = (
                f"resolution changed from {self.last_hw[1]}x{self.last_hw[0]} to {hw[1]}x{hw[0]}"
            )
        self.last_stamp_ns, self.last_hw = stamp_ns, hw
        return reason

    def forget(self) -> None:
        """After an explicit reset (``~/reset_tracks``, a new sequence): no previous frame."""
        self.last_stamp_ns, self.last_hw = None, None
