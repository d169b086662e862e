"""Prophesee EVT 3.0 encoder (numba): events -> words, vector words where they fit.

The word layout is documented in :mod:`facealign_ros.events.evt3`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from facealign_ros.events.evt3 import (
    ADDR_X,
    ADDR_Y,
    CLOCK_PERIOD_US,
    TIME_HIGH,
    TIME_LOW,
    VECT_8,
    VECT_12,
    VECT_BASE_X,
)
from facealign_ros.events.types import EVENT_DTYPE


@nb.njit(cache=True, nogil=True)
def _encode_kernel(t_us, x, y, p, out):
    """Encode sorted events (t in us) into EVT 3.0 words; returns the word count."""
    m = 0
    cur_high = np.int64(-1)  # absolute (unwrapped) high time: t_us >> 12
    cur_low = np.int64(-1)
    cur_y = np.int64(-1)
    n = t_us.shape[0]
    i = 0
    while i < n:
        ti = t_us[i]
        hi = ti >> 12
        if hi != cur_high:
            if cur_high >= 0:
                # step through long gaps so the decoder sees every wrap
                while hi - cur_high > 2048:
                    cur_high += 2048
                    out[m] = (TIME_HIGH << 12) | (cur_high & 0xFFF)
                    m += 1
            out[m] = (TIME_HIGH << 12) | (hi & 0xFFF)
            m += 1
            cur_high = hi
            cur_low = -1
        lo = ti & 0xFFF
        if lo != cur_low:
            out[m] = (TIME_LOW << 12) | lo
            m += 1
            cur_low = lo
        yi = np.int64(y[i])
        if yi != cur_y:
            out[m] = (ADDR_Y << 12) | yi
            m += 1
            cur_y = yi
        pi = np.int64(p[i])
        # run of events sharing (t, y, p) with strictly increasing x
        j = i + 1
        while j < n and t_us[j] == ti and y[j] == y[i] and p[j] == p[i] and x[j] > x[j - 1]:
            j += 1
        k = i
        while k < j:
            x0 = np.int64(x[k])
            # events of this run inside [x0, x0 + 12)
            e = k + 1
            while e < j and np.int64(x[e]) < x0 + 12:
                e += 1
            if e - k == 1:
                out[m] = (ADDR_X << 12) | (pi << 11) | x0
                m += 1
                k = e
                continue
            out[m] = (VECT_BASE_X << 12) | (pi << 11) | x0
            m += 1
            base = x0
            while k < j and np.int64(x[k]) < base + 12:
                span = np.int64(x[j - 1]) - base
                nbits = 8 if span < 8 else 12
                mask = np.int64(0)
                while k < j and np.int64(x[k]) < base + nbits:
                    mask |= np.int64(1) << (np.int64(x[k]) - base)
                    k += 1
                code = VECT_8 if nbits == 8 else VECT_12
                out[m] = (code << 12) | mask
                m += 1
                base += nbits
        i = j
    return m


def encode_evt3(events: np.ndarray, width: int, height: int) -> bytes:
    """Encode events as an EVT 3.0 payload, using vector words where they fit.

    Args:
        events: :data:`EVENT_DTYPE` array. Times are truncated to microseconds and taken modulo
            the 24-bit clock period at the first event (EVT 3.0 carries a relative clock).
            Unsorted input is stably sorted by time first.
        width: sensor width; every x must be < width (and < 2048).
        height: sensor height; every y must be < height (and < 2048).

    Returns:
        The payload bytes (little-endian 16-bit words). Decoding it yields the events in
        canonical order: by time, then runs of equal (t, y, p) with x ascending.

    Raises:
        ValueError: if coordinates are out of range or times are negative.
    """
    ev = np.asarray(events)
    if ev.dtype != EVENT_DTYPE:
        raise ValueError(f"encode(evt3): expected EVENT_DTYPE events, got dtype {ev.dtype}")
    if not (0 < width <= 2048 and 0 < height <= 2048):
        raise ValueError(
            f"encode(evt3): sensor {width}x{height} exceeds the 2048x2048 EVT 3.0 limit"
        )
    if ev.size == 0:
        return b""
    if int(ev["x"].max()) >= width or int(ev["y"].max()) >= height:
        raise ValueError(f"encode(evt3): events outside the {width}x{height} sensor")
    if int(ev["t"].min()) < 0:
        raise ValueError("encode(evt3): negative timestamps")
    t_us = ev["t"] // 1000
    if np.any(np.diff(t_us) < 0):
        order = np.argsort(t_us, kind="stable")
        ev, t_us = ev[order], t_us[order]
    t_us = t_us - (t_us[0] - t_us[0] % CLOCK_PERIOD_US)
    x = np.ascontiguousarray(ev["x"])
    y = np.ascontiguousarray(ev["y"])
    p = (ev["p"] != 0).astype(np.uint8)
    span_high = int((t_us[-1] >> 12) - (t_us[0] >> 12))
    out = np.empty(4 * ev.size + 2 + span_high // 2048 + 1, dtype="<u2")
    m = _encode_kernel(np.ascontiguousarray(t_us), x, y, p, out)
    return out[:m].tobytes()
