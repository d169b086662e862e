"""Mapping the event sensor's clock to ROS time from packet header stamps.

An event camera driver stamps each packet with the host (ROS) time at which its first event
arrived, while the events carry the sensor's own clock (for ``evt3`` a relative microsecond
counter, unrolled across wraps by the decoder). For every packet,
``stamp - sensor_time = offset + latency`` with a transport latency >= 0 that jitters. The
offset is therefore the *lower envelope* of these differences: :class:`SensorClock` keeps the
minimum per time bucket over a sliding window and fits a line through the bucket minima, so
that a drifting (skewed) sensor clock is followed too. A difference that leaves the envelope by
more than ``jump_s`` (a bag loop, a camera restart, a decoder reset) restarts the estimate, and
so does a smaller step of the host clock (NTP/chrony stepping it, a driver re-sync): a
difference more than ``step_s`` below the envelope at once (latency is never negative), one more
than ``step_s`` above it once every packet for ``confirm_s`` of sensor time has been (one late
packet is latency; a lasting rise is the clock). Without that, the window's old minima would
hold the envelope up to ``window_s`` seconds away from the stamps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class ClockStats:
    """Counters of a :class:`SensorClock`.

    Attributes:
        observations: packets observed.
        resets: restarts after a jump (bag loop, camera restart, decoder reset).
        offset_ns: current offset at the latest observation (ROS - sensor), ns.
        skew_ppm: current clock-rate estimate, parts per million.
    """

    observations: int = 0
    resets: int = 0
    offset_ns: int = 0
    skew_ppm: float = 0.0


class SensorClock:
    """Robust sensor-time -> ROS-time mapping (offset and drift).

    Args:
        window_s: seconds of history used for the estimate.
        bucket_s: length of the buckets whose minima define the envelope.
        jump_s: a difference further than this from the current model restarts the estimate.
        step_s: a clock step: a difference this far below the model restarts the estimate,
            one this far above it does so once it has lasted ``confirm_s``.
        confirm_s: sensor seconds every difference must stay ``step_s`` above the model
            before that counts as a step.
    """

    def __init__(
        self,
        window_s: float = 20.0,
        bucket_s: float = 0.5,
        jump_s: float = 0.5,
        step_s: float = 0.1,
        confirm_s: float = 0.5,
    ):
        if not (window_s > 0 and bucket_s > 0 and jump_s > 0 and step_s > 0 and confirm_s > 0):
            raise ValueError(
                "SensorClock: window_s, bucket_s, jump_s, step_s and confirm_s must be positive"
            )
        self.window_ns = int(window_s * 1e9)
        self.bucket_ns = int(bucket_s * 1e9)
        self.jump_ns = int(jump_s * 1e9)
        self.step_ns = int(step_s * 1e9)
        self.confirm_ns = int(confirm_s * 1e9)
        self._high_since: int | None = None  # sensor time since which every diff was high
        self._buckets: deque[list[int]] = deque()  # [bucket id, sensor_ns, min diff]
        self._ref = 0  # sensor-time origin of the fit (keeps the numbers small)
        self._a = 0.0  # fitted skew (d diff / d sensor)
        self._b = 0  # fitted diff at _ref, ns
        self._last_sensor: int | None = None
        self.stats = ClockStats()

    @property
    def ready(self) -> bool:
        """True once at least one packet was observed."""
        return bool(self._buckets)

    def reset(self) -> None:
        """Forget the estimate (counted in :attr:`stats`)."""
        if self._buckets:
            self.stats.resets += 1
        self._buckets.clear()
        self._a, self._b = 0.0, 0
        self._last_sensor = None
        self._high_since = None

    def _model(self, sensor_ns: int) -> int:
        return self._b + int(round(self._a * (sensor_ns - self._ref)))

    def observe(self, stamp_ns: int, sensor_ns: int) -> bool:
        """Add one packet's header stamp and its first event's sensor time (both ns).

        Returns:
            True if this observation restarted the estimate (a jump was detected).
        """
        stamp_ns, sensor_ns = int(stamp_ns), int(sensor_ns)
        diff = stamp_ns - sensor_ns
        restarted = False
        if self._buckets:
            went_back = (
                self._last_sensor is not None and sensor_ns < self._last_sensor - self.jump_ns
            )
            dev = diff - self._model(sensor_ns)
            if (
                went_back
                or abs(dev) > self.jump_ns
                or dev < -self.step_ns
                or self._stepped_up(dev, sensor_ns)
            ):
                self.reset()
                restarted = True
        self.stats.observations += 1
        self._last_sensor = (
            sensor_ns if self._last_sensor is None else max(self._last_sensor, sensor_ns)
        )
        bucket = sensor_ns // self.bucket_ns
        changed = True
        if self._buckets and self._buckets[-1][0] == bucket:
            last = self._buckets[-1]
            changed = diff < last[2]
            if changed:
                last[1], last[2] = sensor_ns, diff
        else:
            self._buckets.append([bucket, sensor_ns, diff])
        while self._buckets and self._buckets[0][1] < self._last_sensor - self.window_ns:
            self._buckets.popleft()
            changed = True
        if changed:  # the envelope only moves when a bucket minimum does
            self._fit()
        self.stats.offset_ns = self._model(sensor_ns)
        self.stats.skew_ppm = self._a * 1e6
        return restarted

    def _stepped_up(self, dev: int, sensor_ns: int) -> bool:
        """Every difference has been ``step_s`` above the model for ``confirm_s``."""
        if dev <= self.step_ns:
            self._high_since = None
            return False
        if self._high_since is None:
            self._high_since = sensor_ns
        return sensor_ns - self._high_since >= self.confirm_ns

    def _fit(self) -> None:
        # The newest bucket is still filling, so its minimum is provisional: use the completed
        # ones for the slope once there are three, and the overall minimum for the level.
        pts = np.array([(b[1], b[2]) for b in self._buckets], dtype=np.float64)
        self._ref = int(pts[-1, 0])
        if len(pts) >= 3 and pts[-1, 0] - pts[0, 0] > 2 * self.bucket_ns:
            x = pts[:, 0] - self._ref
            a, _ = np.polyfit(x, pts[:, 1], 1)
            resid = pts[:, 1] - a * x
            self._a = float(a)
            self._b = int(round(float(resid.min())))  # lower envelope with the fitted slope
        else:
            self._a = 0.0
            self._b = int(pts[:, 1].min())

    def to_ros(self, sensor_ns: int | np.ndarray) -> int | np.ndarray:
        """ROS time (ns) of a sensor time (ns) or an int64 array of them.

        Raises:
            RuntimeError: before the first observation.
        """
        if not self._buckets:
            raise RuntimeError("SensorClock: no packet observed yet")
        if isinstance(sensor_ns, np.ndarray):
            dt = (sensor_ns - self._ref).astype(np.float64)
            return sensor_ns + self._b + np.round(self._a * dt).astype(np.int64)
        return int(sensor_ns) + self._model(int(sensor_ns))

    def to_sensor(self, ros_ns: int) -> int:
        """Sensor time (ns) of a ROS time (ns); inverse of :meth:`to_ros`."""
        if not self._buckets:
            raise RuntimeError("SensorClock: no packet observed yet")
        # ros = s + b + a (s - ref)  =>  s = (ros - b + a ref) / (1 + a)
        s = (int(ros_ns) - self._b + self._a * self._ref) / (1.0 + self._a)
        return int(round(s))
