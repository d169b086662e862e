"""``mono``, ``trigger`` and ``libcaer`` codecs: fixed-size little-endian records (numpy).

``mono`` / ``trigger``: 64-bit words. Bit 63 polarity (trigger: edge), bits 48-62 y
(trigger: id), bits 32-47 x (trigger: unused), bits 0-31 time offset in ns from ``time_base``.

``libcaer``: 8-byte records ``uint32 data; int32 ts_us``. x = (data >> 17) & 0x7FFF,
y = (data >> 2) & 0x7FFF, polarity = (data >> 1) & 1, t = time_base + ts_us * 1000 ns; a
timestamp that goes back inside one packet is a 31-bit rollover and adds 2**31 us.
"""

from __future__ import annotations

import numpy as np

from facealign_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE


def _in_range(x: np.ndarray, y: np.ndarray, width: int, height: int) -> np.ndarray:
    return (x < width) & (y < height)


def decode_mono(
    words: np.ndarray, time_base: int, width: int, height: int
) -> tuple[np.ndarray, int]:
    """Decode ``mono`` 64-bit words (uint64, shape ``(N,)``).

    Returns:
        ``(events, n_dropped)``: in-range events in stream order and the out-of-range count.
    """
    x = ((words >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.uint16)
    y = ((words >> np.uint64(48)) & np.uint64(0x7FFF)).astype(np.uint16)
    keep = _in_range(x, y, width, height)
    n_keep = int(np.count_nonzero(keep))
    w = words if n_keep == words.size else words[keep]
    out = np.empty(n_keep, dtype=EVENT_DTYPE)
    out["t"] = (w & np.uint64(0xFFFFFFFF)).astype(np.int64) + np.int64(time_base)
    out["x"] = x if n_keep == words.size else x[keep]
    out["y"] = y if n_keep == words.size else y[keep]
    out["p"] = (w >> np.uint64(63)).astype(np.uint8)
    return out, words.size - n_keep


def decode_trigger(words: np.ndarray, time_base: int) -> np.ndarray:
    """Decode ``trigger`` 64-bit words into :data:`TRIGGER_DTYPE` (id = bits 48-62, edge = 63)."""
    out = np.empty(words.size, dtype=TRIGGER_DTYPE)
    out["t"] = (words & np.uint64(0xFFFFFFFF)).astype(np.int64) + np.int64(time_base)
    out["id"] = ((words >> np.uint64(48)) & np.uint64(0x7FFF)).astype(np.uint16)
    out["p"] = (words >> np.uint64(63)).astype(np.uint8)
    return out


def encode_mono(events: np.ndarray, time_base: int, width: int, height: int) -> bytes:
    """Encode events as a ``mono`` payload relative to ``time_base`` (ns).

    Raises:
        ValueError: if an event lies outside the sensor or its offset from ``time_base`` does not
            fit the 32-bit nanosecond field (0 <= t - time_base < 2**32).
    """
    ev = np.asarray(events)
    if ev.dtype != EVENT_DTYPE:
        raise ValueError(f"encode(mono): expected EVENT_DTYPE events, got dtype {ev.dtype}")
    if ev.size == 0:
        return b""
    if int(ev["x"].max()) >= width or int(ev["y"].max()) >= min(height, 1 << 15):
        raise ValueError(f"encode(mono): events outside the {width}x{height} sensor")
    dt = ev["t"] - np.int64(time_base)
    if int(dt.min()) < 0 or int(dt.max()) >= 1 << 32:
        raise ValueError(
            "encode(mono): t - time_base must lie in [0, 2**32) ns; split the events into packets"
        )
    w = dt.astype(np.uint64)
    w |= ev["x"].astype(np.uint64) << np.uint64(32)
    w |= ev["y"].astype(np.uint64) << np.uint64(48)
    w |= (ev["p"] != 0).astype(np.uint64) << np.uint64(63)
    return w.astype("<u8").tobytes()


LIBCAER_RECORD = np.dtype([("data", "<u4"), ("ts", "<i4")])
"""One libcaer polarity event record (8 bytes)."""


LIBCAER_ROLLOVER_MIN_US = 1 << 30
"""A timestamp this much below its predecessor (µs) is a rollover of libcaer's 31-bit clock."""


def decode_libcaer(
    records: np.ndarray, time_base: int, width: int, height: int
) -> tuple[np.ndarray, int, int]:
    """Decode libcaer records (:data:`LIBCAER_RECORD`, shape ``(N,)``).

    Returns:
        ``(events, n_dropped, n_rollovers)``.
    """
    data = records["data"]
    ts = records["ts"].astype(np.int64)
    roll = np.zeros(ts.size, dtype=np.int64)
    if ts.size > 1:  # a fall by more than half the 31-bit range is a rollover, a rise by as
        # much a record from before it (out of order at the wrap); small steps back are left
        # as they are, for the buffer's skew check
        step = np.diff(ts)
        wraps = (step < -LIBCAER_ROLLOVER_MIN_US).astype(np.int64)
        np.cumsum(wraps - (step > LIBCAER_ROLLOVER_MIN_US), out=roll[1:])
    x = ((data >> 17) & 0x7FFF).astype(np.uint16)
    y = ((data >> 2) & 0x7FFF).astype(np.uint16)
    keep = _in_range(x, y, width, height)
    out = np.empty(int(np.count_nonzero(keep)), dtype=EVENT_DTYPE)
    out["t"] = np.int64(time_base) + ((ts + (roll << 31)) * 1000)[keep]
    out["x"] = x[keep]
    out["y"] = y[keep]
    out["p"] = ((data >> 1) & 1).astype(np.uint8)[keep]
    return out, int(ts.size - out.size), max(int(roll[-1]), 0) if roll.size else 0
