"""The one event dtype used everywhere, the trigger dtype, and decoder errors/statistics.

Events are numpy structured arrays with fields

* ``t`` int64, nanoseconds (sensor clock for ``evt3``/``libcaer_cmp``, ``time_base``-relative
  clock for ``mono``/``libcaer`` as in ``event_camera_codecs``),
* ``x``, ``y`` uint16, pixel column/row (0-based, x to the right, y down),
* ``p`` uint8, polarity: 1 = ON (brighter), 0 = OFF.

The dtype is padded to 16 bytes so that fields are naturally aligned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EVENT_DTYPE = np.dtype(
    {
        "names": ["t", "x", "y", "p"],
        "formats": ["<i8", "<u2", "<u2", "u1"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)
"""Structured dtype of one change-detection event (t ns, x, y, p)."""

TRIGGER_DTYPE = np.dtype(
    {
        "names": ["t", "id", "p"],
        "formats": ["<i8", "<u2", "u1"],
        "offsets": [0, 8, 10],
        "itemsize": 16,
    }
)
"""Structured dtype of one external-trigger event (t ns, channel id, edge: 1 rising, 0 falling)."""


class DecodeError(ValueError):
    """Raised for payloads a decoder cannot interpret at all (unknown encoding, big-endian)."""


def empty_events(n: int = 0) -> np.ndarray:
    """Return a zero-filled event array of length ``n`` with :data:`EVENT_DTYPE`."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def concat_structured(arrays: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """Concatenate structured arrays keeping ``dtype`` exactly.

    ``np.concatenate`` of padded structured dtypes returns a packed dtype under numpy 2, which
    would silently change the event layout; this copies into an array of ``dtype`` instead.
    """
    out = np.empty(sum(int(a.shape[0]) for a in arrays), dtype=dtype)
    pos = 0
    for a in arrays:
        out[pos : pos + a.shape[0]] = a
        pos += a.shape[0]
    return out


def concat_events(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate event arrays into one :data:`EVENT_DTYPE` array."""
    return concat_structured(arrays, EVENT_DTYPE)


def as_events(events: np.ndarray) -> np.ndarray:
    """Return ``events`` as a contiguous 1-D :data:`EVENT_DTYPE` array (copied only if needed).

    Other structured dtypes with fields ``t, x, y, p`` are converted field by field: negative
    or too large coordinates become 0xFFFF (outside every sensor, so they are dropped later),
    and any positive polarity becomes 1.

    Raises:
        TypeError: if ``events`` is not a structured array with fields t, x, y, p.
        ValueError: if it is not 1-D.
    """
    names = getattr(getattr(events, "dtype", None), "names", None)
    if names is None or not {"t", "x", "y", "p"} <= set(names):
        raise TypeError("events must be a structured array with fields t, x, y, p")
    if events.ndim != 1:
        raise ValueError(f"events must be 1-D, got shape {events.shape}")
    if events.dtype == EVENT_DTYPE:
        return np.ascontiguousarray(events)
    out = np.empty(events.shape[0], dtype=EVENT_DTYPE)
    out["t"] = events["t"]
    for name in ("x", "y"):
        v = np.asarray(events[name]).astype(np.int64)
        out[name] = np.where((v < 0) | (v > 0xFFFF), 0xFFFF, v)
    out["p"] = np.asarray(events["p"]) > 0
    return out


def make_events(t, x, y, p) -> np.ndarray:
    """Build an event array from four equally long array-likes (t in ns)."""
    t = np.asarray(t, dtype=np.int64)
    out = np.empty(t.shape[0], dtype=EVENT_DTYPE)
    out["t"] = t
    out["x"] = np.asarray(x)
    out["y"] = np.asarray(y)
    out["p"] = np.asarray(p)
    return out


@dataclass
class DecodeStats:
    """Running counters of one :class:`~facealign_ros.events.Decoder`.

    Attributes:
        packets: payloads decoded.
        words: words read (16-bit for evt3/libcaer_cmp, 64-bit for mono/trigger/libcaer).
        events: change-detection events returned.
        triggers: trigger events returned.
        dropped_out_of_range: events whose x/y fell outside width x height.
        skipped_before_time: words skipped before the first time reference (evt3 TIME_HIGH).
        unknown_words: words with a code the format does not define (counted and skipped).
        truncated_bytes: trailing bytes that did not form a whole word.
        time_wraps: 24-bit clock wraps detected (evt3) or 31-bit rollovers (libcaer).
        dropped_overflow: the oldest events of packets that held more than the caller's
            ``max_events`` (the pipeline's event-buffer size).
        unknown_codes: per-code count of unknown words.
    """

    packets: int = 0
    words: int = 0
    events: int = 0
    triggers: int = 0
    dropped_out_of_range: int = 0
    skipped_before_time: int = 0
    unknown_words: int = 0
    truncated_bytes: int = 0
    time_wraps: int = 0
    dropped_overflow: int = 0
    unknown_codes: dict[int, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        """Total of bad words and bytes: unknown words plus truncated bytes."""
        return self.unknown_words + self.truncated_bytes

    def as_dict(self) -> dict:
        """Return the counters as a plain JSON-serialisable dict."""
        d = dict(self.__dict__)
        d["unknown_codes"] = {str(k): v for k, v in self.unknown_codes.items()}
        return d
