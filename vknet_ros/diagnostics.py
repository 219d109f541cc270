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
from dataclasses import dataclass
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from vknet_ros.loader import LoadedPipeline
from vknet_ros.params import NodeParams

STAGES: tuple[str, ...] = ("decode", "pipeline", "encode", "publish", "total", "latency")


@dataclass(frozen=True)
class DiagnosticsConfig:
    """The rules of the status level (ROS parameters ``diagnostics.*``), as diagnostic_updater's
    ``FrequencyStatus`` and ``TimeStampStatus``.

    window_s:         the rate is the number of processed frames in the last ``window_s``
    expected_rate_hz: 0 = not checked; else WARN below ``(1 - tolerance) * expected``
    tolerance:        relative rate tolerance (diagnostic_updater's default 0.1)
    stale_timeout_s:  no processed frame for this long while active -> STALE (level 3)
    """

    window_s: float = 5.0
    expected_rate_hz: float = 0.0
    tolerance: float = 0.1
    stale_timeout_s: float = 10.0


class NodeStats:
    """Thread-safe counters + recent per-stage times (the worker writes, a timer reads).

    The rate and the error counts of the status cover a time window (``DiagnosticsConfig``);
    the stage times are the last ``window`` frames.
    """

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, deque] = {s: deque(maxlen=window) for s in STAGES}
        self._done: deque = deque()  # monotonic time of each processed frame (time-pruned)
        self._failures: deque = deque()  # monotonic time of each bad or failed frame
        self.active_since: Optional[float] = None  # monotonic time of the last activation
        self.last_done: Optional[float] = None  # monotonic time of the last processed frame
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
            self._failures.append(time.monotonic())

    def activated(self) -> None:
        """Start the staleness clock (a new activation; the window restarts)."""
        with self._lock:
            self.active_since = time.monotonic()
            self.last_done = None
            self._done.clear()
            self._failures.clear()

    def record(self, times_ms: dict[str, float]) -> None:
        with self._lock:
            for k, v in times_ms.items():
                self._times[k].append(float(v))
            self.processed += 1
            self.last_done = time.monotonic()
            self._done.append(self.last_done)
            if len(self._done) > 100_000:  # a bound whatever the window
                self._done.popleft()

    def _prune(self, now: float, window_s: float) -> None:
        for q in (self._done, self._failures):
            while q and q[0] <= now - window_s:
                q.popleft()

    def rate_hz(self, window_s: float = 5.0, now: Optional[float] = None) -> float:
        """Processed frames per second over the last ``window_s`` (or since activation)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._prune(now, window_s)
            span = (
                window_s if self.active_since is None else min(window_s, now - self.active_since)
            )
            return len(self._done) / span if span > 0 else 0.0

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

    def to_status(
        self,
        name: str,
        hardware_id: str,
        info: dict[str, str],
        cfg: DiagnosticsConfig = DiagnosticsConfig(),
        now: Optional[float] = None,
    ) -> DiagnosticStatus:
        """The status of an active node.

        STALE: no frame processed for ``stale_timeout_s`` (or none since activation for that
        long); WARN: no frame yet, rate below the expected one, no frame for longer than the
        window, or frames rejected/failed within the window; OK otherwise.
        """
        now = time.monotonic() if now is None else now
        rate = self.rate_hz(cfg.window_s, now)
        values = {
            "rate_hz": f"{rate:.2f}",
            "rate_window_s": f"{cfg.window_s:g}",
            "expected_rate_hz": f"{cfg.expected_rate_hz:g}",
            "stale_timeout_s": f"{cfg.stale_timeout_s:g}",
        }
        values.update({k: f"{v:.2f}" for k, v in self.summary().items()})
        with self._lock:
            last = self.last_done
            since = self.active_since if self.active_since is not None else now
            values.update(
                {
                    "frames_received": str(self.received),
                    "frames_processed": str(self.processed),
                    "frames_dropped": str(self.dropped),
                    "frames_bad_input": str(self.bad_input),
                    "frames_failed": str(self.errors),
                    "track_resets": str(self.resets),
                    "last_error": self.last_error,
                }
            )
            failures, last_error = len(self._failures), self.last_error
        age = now - (last if last is not None else since)
        values["seconds_since_last_frame"] = f"{age:.1f}"
        values.update(info)
        low = cfg.expected_rate_hz > 0 and rate < (1 - cfg.tolerance) * cfg.expected_rate_hz
        if age > cfg.stale_timeout_s:
            level = DiagnosticStatus.STALE
            message = (
                f"no frame processed for {age:.1f} s (stale_timeout {cfg.stale_timeout_s:g} s)"
            )
        elif last is None:
            level, message = DiagnosticStatus.WARN, "waiting for images"
        elif low or age > cfg.window_s:
            level = DiagnosticStatus.WARN
            message = (
                f"rate {rate:.1f} Hz below the expected {cfg.expected_rate_hz:g} Hz"
                if low
                else f"no frame for {age:.1f} s"
            )
        elif failures:
            level = DiagnosticStatus.WARN
            message = f"{failures} frames rejected or failed in {cfg.window_s:g} s: {last_error}"
        else:
            level, message = DiagnosticStatus.OK, f"running at {rate:.1f} Hz"
        return _status(level, name, message, hardware_id, values)


def state_status(
    name: str, hardware_id: str, state: str, error: str, info: dict[str, str]
) -> DiagnosticStatus:
    """The status of a node that is not active: ERROR with the error text after a failed
    transition (e.g. the model could not be loaded), WARN otherwise (unconfigured, inactive)."""
    level = DiagnosticStatus.ERROR if error else DiagnosticStatus.WARN
    message = f"{state}: {error}" if error else f"{state}: not processing images"
    values = {"lifecycle_state": state, "last_error": error, **info}
    return _status(level, name, message, hardware_id, values)


def _status(
    level: bytes, name: str, message: str, hardware_id: str, values: dict
) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )


def node_status(
    fqn: str,
    state: str,
    failure: str,
    loaded: Optional[LoadedPipeline],
    params: Optional[NodeParams],
    stats: NodeStats,
) -> DiagnosticStatus:
    """The node's one status, named and identified by its fully qualified name: its health
    (rate, latency, drops) while active, else the lifecycle state and (ERROR) the last failed
    transition's error."""
    name = f"{fqn}: video panoptic segmentation"
    info = {}
    if loaded is not None and params is not None:
        hw = params.network_hw
        info = {
            "backend": loaded.backend_name,
            "model": loaded.model_path,
            "device": loaded.device,
            "network_size": "camera (bounded by the native size)"
            if hw is None
            else f"{hw[1]}x{hw[0]}",
        }
    if state == "active" and params is not None:
        p = params
        cfg = DiagnosticsConfig(
            p.diagnostics_window, p.expected_rate, p.rate_tolerance, p.stale_timeout
        )
        return stats.to_status(name, fqn, info, cfg)
    return state_status(name, fqn, state, failure, info)


def diagnostic_array(status: DiagnosticStatus, stamp) -> DiagnosticArray:
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = [status]
    return arr


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    """DiagnosticStatus -> {key: value} (for tests and the benchmark)."""
    return {kv.key: kv.value for kv in status.values}
