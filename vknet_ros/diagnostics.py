"""Rolling node statistics and their ``/diagnostics`` message (message types only, no rclpy).

Stages timed per processed frame (milliseconds):
  decode   Image/CompressedImage -> RGB
  pipeline ``VideoPanopticPipeline.step`` (preprocess + backend + merge + tracker)
  encode   PanopticFrame -> Image messages (+ overlay while subscribed)
  publish  rclpy publish calls
  total    callback receipt -> last publish
  latency  node clock now - header.stamp at the last publish (end-to-end incl. transport)
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

STAGES: tuple[str, ...] = ("decode", "pipeline", "encode", "publish", "total", "latency")


class NodeStats:
    """Thread-safe counters + a window of recent per-stage times (the worker writes, a timer reads)."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, deque] = {s: deque(maxlen=window) for s in STAGES}
        self._done: deque = deque(maxlen=window)  # monotonic time of each processed frame
        self.received = 0  # frames that reached the callback
        self.processed = 0  # frames that produced outputs
        self.dropped = 0  # frames replaced in the latest-frame slot before the worker took them
        self.bad_input = 0  # frames rejected by conversion (encoding, size, ...)
        self.errors = 0  # frames that failed inside the pipeline or publishing
        self.resets = 0  # tracker resets (service, time jump back, resolution change)
        self.last_error = ""

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + n)

    def error(self, what: str, message: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)
            self.last_error = message

    def record(self, times_ms: dict[str, float]) -> None:
        with self._lock:
            for k, v in times_ms.items():
                self._times[k].append(float(v))
            self.processed += 1
            self._done.append(time.monotonic())

    def rate_hz(self) -> float:
        with self._lock:
            if len(self._done) < 2:
                return 0.0
            span = self._done[-1] - self._done[0]
            return (len(self._done) - 1) / span if span > 0 else 0.0

    def summary(self) -> dict[str, float]:
        """{"<stage>_mean_ms", "<stage>_p95_ms"} over the window (stages with samples only)."""
        with self._lock:
            out = {}
            for s, q in self._times.items():
                if q:
                    a = np.asarray(q)
                    out[f"{s}_mean_ms"] = float(a.mean())
                    out[f"{s}_p95_ms"] = float(np.percentile(a, 95))
            return out

    def to_status(self, name: str, hardware_id: str, info: dict[str, str],
                  expected_rate_hz: Optional[float] = None) -> DiagnosticStatus:
        """One DiagnosticStatus: OK while frames flow, WARN without frames or with errors."""
        rate = self.rate_hz()
        values = {"rate_hz": f"{rate:.2f}"}
        values.update({k: f"{v:.2f}" for k, v in self.summary().items()})
        with self._lock:
            values.update({
                "frames_received": str(self.received), "frames_processed": str(self.processed),
                "frames_dropped": str(self.dropped), "frames_bad_input": str(self.bad_input),
                "frames_failed": str(self.errors), "track_resets": str(self.resets),
                "last_error": self.last_error,
            })
            processed, errors = self.processed, self.errors
        values.update(info)
        if processed == 0:
            level, message = DiagnosticStatus.WARN, "waiting for images"
        elif errors or (expected_rate_hz and rate < 0.5 * expected_rate_hz):
            level, message = DiagnosticStatus.WARN, "running with errors or low rate"
        else:
            level, message = DiagnosticStatus.OK, f"running at {rate:.1f} Hz"
        return DiagnosticStatus(
            level=level, name=name, message=message, hardware_id=hardware_id,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )


def diagnostic_array(status: DiagnosticStatus, stamp) -> DiagnosticArray:
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = [status]
    return arr


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    """DiagnosticStatus -> {key: value} (for tests and the benchmark)."""
    return {kv.key: kv.value for kv in status.values}
