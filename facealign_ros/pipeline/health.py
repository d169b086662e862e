"""Counters, latency statistics, throttled logging and the diagnostics summary of the pipeline.

Everything that goes wrong with an input is *counted* under a reason (:data:`DROP_REASONS`) and
*logged*, at most once per reason and period, so a bad stream never floods the log nor raises
out of a callback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

DROP_REASONS = (
    "bad_packet",  # undecodable packet: unknown encoding, invalid size, big-endian, not bytes
    "packet_mismatch",  # packet encoding/size differs from the stream's
    "event_skew",  # events mapped too far from their packet's stamp (garbage payload)
    "time_backwards",  # a message stamped behind the previous one (not a loop)
    "unstamped",  # a header stamp of 0: the driver does not stamp its messages
    "bad_image",  # unsupported encoding, inconsistent buffer
    "image_size",  # image size differs from the event sensor (and no homography)
    "bad_camera_info",  # camera_info without a usable K
    "stale",  # input replaced by a newer one before it was processed (latest-only)
    "missing_events",  # an image answered without events (none near its stamp)
    "missing_rgb",  # fused mode answering without RGB
    "no_input",  # a target with neither usable events nor RGB
    "inference_error",  # the network or the pose solver raised
)

LogFn = Callable[[str], None]


class ThrottledLog:
    """Log a warning per key at most once per ``period_s`` (counting what was suppressed).

    Args:
        sink: a ``logging.Logger`` (uses ``warning``) or a ``callable(str)`` (e.g. an rclpy
            logger's ``warn``).
        period_s: minimum wall-clock seconds between two lines of one key.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        sink: logging.Logger | LogFn | None = None,
        period_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sink is None:
            sink = logging.getLogger("facealign_ros.pipeline")
        self._emit: LogFn = sink.warning if isinstance(sink, logging.Logger) else sink
        self.period_s = float(period_s)
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warn(self, key: str, message: str) -> bool:
        """Emit ``message`` unless ``key`` was logged within the period; True if emitted."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            n = self._suppressed.pop(key, 0)
            self._last[key] = now
        suffix = f" ({n} similar suppressed)" if n else ""
        try:
            self._emit(f"{message}{suffix}")
        except Exception:  # noqa: BLE001 - a broken log sink must not break the pipeline
            return False
        return True


class PipelineStats:
    """Thread-safe counters and a latency window.

    Args:
        window: latencies kept for the percentiles.
    """

    def __init__(self, window: int = 2000) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {
            "event_packets": 0,
            "events": 0,
            "images": 0,
            "camera_infos": 0,
            "targets": 0,
            "results": 0,
            "faces": 0,
            "no_face": 0,
            "detections": 0,
            "detect_runs": 0,
            "lost": 0,
            "loops": 0,
            "windows_truncated": 0,
        }
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self._latency: deque[float] = deque(maxlen=window)
        self._compute: deque[float] = deque(maxlen=window)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + int(n)

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` drops for ``reason`` (one of :data:`DROP_REASONS`)."""
        with self._lock:
            self.drops[reason] = self.drops.get(reason, 0) + int(n)

    def latency(self, latency_ms: float, compute_ms: float) -> None:
        """Record one result's input-to-result latency and compute time."""
        with self._lock:
            self._latency.append(float(latency_ms))
            self._compute.append(float(compute_ms))

    def snapshot(self) -> dict[str, Any]:
        """Counters, drops and latency percentiles (ms) as a JSON-able dict."""
        with self._lock:
            lat = np.asarray(self._latency, dtype=np.float64)
            comp = np.asarray(self._compute, dtype=np.float64)
            out: dict[str, Any] = dict(self.counters)
            out["drops"] = dict(self.drops)
        for name, arr in (("latency", lat), ("compute", comp)):
            for q in (50, 90, 99):
                out[f"{name}_p{q}_ms"] = float(np.percentile(arr, q)) if arr.size else None
        return out


def diagnostic_summary(
    snap: dict[str, Any], warn_latency_ms: float = 40.0, error_latency_ms: float = 200.0
) -> tuple[int, str]:
    """Level (0 OK, 1 WARN, 2 ERROR as ``diagnostic_msgs/DiagnosticStatus``) and message.

    WARN when the p99 latency exceeds ``warn_latency_ms`` or inputs were dropped as stale,
    ERROR when the p99 exceeds ``error_latency_ms`` or inference failed.
    """
    p99 = snap.get("latency_p99_ms")
    drops = snap.get("drops", {})
    if drops.get("inference_error", 0) or (p99 is not None and p99 > error_latency_ms):
        return (
            2,
            f"latency p99 {p99 or 0:.1f} ms, inference errors {drops.get('inference_error', 0)}",
        )
    bad_inputs = sum(v for k, v in drops.items() if k not in ("stale", "missing_rgb"))
    if p99 is not None and p99 > warn_latency_ms:
        return 1, f"latency p99 {p99:.1f} ms over {warn_latency_ms:.0f} ms"
    if bad_inputs:
        return 1, f"{bad_inputs} inputs dropped (see drop counters)"
    return 0, "ok"
