"""Anti-flicker: drop the events of pixels that fire periodically at a lamp's flicker frequency.

Lamps on 50/60 Hz mains flicker at 100/120 Hz, and every lit pixel of an event camera then fires
a burst of ON events while the light rises and OFF events while it falls, once per period: tens
of Mev/s from a still scene (docs/BENCHMARKS.md, "Mains flicker"). Like the hardware filter of
Prophesee sensors, this filter works per pixel and polarity: events closer than ``gap_ns`` to
the previous one of the same pixel and polarity belong to one burst; a burst that starts one
period (in the band ``[1/max_hz, 1/min_hz]``) after the previous burst's start is periodic; once
``bursts`` such bursts follow each other, the pixel's events are dropped until a burst comes
off the period. A head moving past a pixel gives one burst there, not a train of them, so its
events pass; under flicker the events of a lit face are dropped with the rest, so the network
answers from what is left and from RGB.

Memory: three ``(2, H, W)`` arrays (two int64, one int32): ~37 MB for a 1280x720 sensor.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_NEVER = np.iinfo(np.int64).min // 2


@njit(cache=True, nogil=True)
def _filter(t, x, y, p, last, start, streak, keep, gap, pmin, pmax, need):  # pragma: no cover
    for i in range(t.size):
        pi = 1 if p[i] > 0 else 0
        yi, xi, ti = y[i], x[i], t[i]
        if ti - last[pi, yi, xi] > gap:  # a new burst at this pixel and polarity
            period = ti - start[pi, yi, xi]
            if pmin <= period <= pmax:
                streak[pi, yi, xi] += 1
            else:
                streak[pi, yi, xi] = 0
            start[pi, yi, xi] = ti
        last[pi, yi, xi] = ti
        keep[i] = streak[pi, yi, xi] < need


class FlickerFilter:
    """Per-pixel periodic-burst filter over a stream of events (state carries across calls).

    Args:
        width: sensor width, px.
        height: sensor height, px.
        min_hz: lowest flicker frequency removed, Hz.
        max_hz: highest, Hz (> ``min_hz``).
        gap_ns: events of one pixel and polarity closer than this form one burst, ns (must be
            under half the shortest period); default 40 % of the shortest period.
        bursts: periodic bursts in a row after which a pixel's events are dropped.

    Raises:
        ValueError: a non-positive size, a band that is not ``0 < min_hz < max_hz``, or a gap
            not under half the shortest period.
    """

    def __init__(
        self,
        width: int,
        height: int,
        min_hz: float = 80.0,
        max_hz: float = 150.0,
        gap_ns: int | None = None,
        bursts: int = 2,
    ) -> None:
        if int(width) <= 0 or int(height) <= 0:
            raise ValueError(f"flicker filter: sensor {width}x{height} has no pixels")
        if not 0 < min_hz < max_hz:
            raise ValueError(f"flicker filter: band {min_hz}-{max_hz} Hz needs 0 < min < max")
        self.pmin, self.pmax = int(1e9 / max_hz), int(1e9 / min_hz)
        gap_ns = int(0.4 * self.pmin) if gap_ns is None else int(gap_ns)
        if not 0 < gap_ns < self.pmin / 2:
            raise ValueError(
                f"flicker filter: burst gap {gap_ns} ns must be under half the shortest period "
                f"({self.pmin // 2} ns)"
            )
        self.width, self.height = int(width), int(height)
        self.gap_ns, self.bursts = int(gap_ns), int(bursts)
        shape = (2, self.height, self.width)
        self._last = np.full(shape, _NEVER, np.int64)
        self._start = np.full(shape, _NEVER, np.int64)
        self._streak = np.zeros(shape, np.int32)
        self.seen = 0
        self.dropped = 0

    def reset(self) -> None:
        """Forget every pixel's history (a new stream); the counts are kept."""
        self._last.fill(_NEVER)
        self._start.fill(_NEVER)
        self._streak.fill(0)

    def keep(self, events: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: which of these time-ordered events are not flicker.

        Args:
            events: structured events with ``t`` (ns, sensor time, non-decreasing across calls),
                ``x``, ``y`` inside the sensor, ``p``.
        """
        n = int(events.size)
        out = np.ones(n, np.bool_)
        if n:  # the fields as they are (strided views, no copies): numba reads them in place
            _filter(
                events["t"], events["x"], events["y"], events["p"],
                self._last, self._start, self._streak, out,
                self.gap_ns, self.pmin, self.pmax, self.bursts,
            )  # fmt: skip
        self.seen += n
        self.dropped += n - int(np.count_nonzero(out))
        return out
