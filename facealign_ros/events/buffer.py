"""A bounded, time-ordered event store with reordering tolerance.

The decoder appends packets; the worker cuts windows ``[t_start, t_end)``. Events live in one
preallocated :data:`~facealign_ros.events.types.EVENT_DTYPE` array (plus a contiguous copy of the
timestamps for ``searchsorted``) used as a sliding region: appending writes after the region,
dropping old events moves its start, and when the end reaches the capacity the live region is
moved back to the front (compaction). The capacity is ``max_events + slack`` with
``slack = max(max_events // 2, 1024)``, so each event is copied O(1) times on average and memory
never grows past the constructor's bound.

Locking: one writer at a time (``append``, ``clear``: a writer lock) and a short reader lock
that queries and index updates share. A compaction moves the whole live region (at 5 Mev/s
and 500 ms, 2.5 M events, ~10 ms); when the region's destination does not overlap it (the
usual case: the buffer is less than two thirds full), the copy runs *outside* the reader
lock, so windows cut meanwhile are not held up; only the index update waits.

Ordering rules for :meth:`EventBuffer.append`:

* a chunk that is not sorted by ``t`` is stable-sorted first;
* events older than ``latest_time - reorder_tolerance_ns`` are dropped (``dropped_late``);
* the others are merged in time order (ties: already-buffered events first, then chunk order);
* then events older than ``latest_time - max_duration_ns`` are dropped (``dropped_expired``),
  and the oldest events beyond ``max_events`` (``dropped_overflow``).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace

import numpy as np

from facealign_ros.events.types import EVENT_DTYPE, as_events

__all__ = ["BufferStats", "EventBuffer"]

_RAW = np.dtype((np.void, EVENT_DTYPE.itemsize))
"""Events seen as opaque 16-byte records: numpy copies these ~10x faster than the padded
structured dtype, so all copies below go through such views."""


def _raw(events: np.ndarray) -> np.ndarray:
    return events.view(_RAW)


@dataclass
class BufferStats:
    """Running counters of an :class:`EventBuffer` (events unless noted).

    Every received event is either buffered or counted once as dropped or cleared:
    ``received == len(buffer) + dropped_late + dropped_expired + dropped_overflow + cleared``.

    Attributes:
        received: events passed to ``append``.
        accepted: events that ``append`` stored (the sum of its return values).
        dropped_late: older than ``latest_time - reorder_tolerance_ns`` on arrival.
        dropped_expired: older than ``latest_time - max_duration_ns`` (on arrival or later).
        dropped_overflow: oldest events dropped to keep at most ``max_events``.
        cleared: events discarded by ``clear``.
        reordered: stored events older than the buffer's newest event (merged, not appended).
        unsorted_chunks: chunks (calls) that had to be sorted.
    """

    received: int = 0
    accepted: int = 0
    dropped_late: int = 0
    dropped_expired: int = 0
    dropped_overflow: int = 0
    cleared: int = 0
    reordered: int = 0
    unsorted_chunks: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a plain dict."""
        return asdict(self)


def _positive_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class EventBuffer:
    """Bounded, time-ordered store of events (thread-safe: one internal lock).

    Args:
        max_events: most events kept (>= 1); the oldest are dropped beyond it.
        max_duration_ns: events older than ``latest_time - max_duration_ns`` are dropped (> 0).
        reorder_tolerance_ns: how far (ns) behind the newest buffered event a late event may
            arrive and still be merged in order (>= 0); older ones are dropped as late.

    Raises:
        ValueError: for a non-integer or out-of-range argument.
    """

    def __init__(
        self, max_events: int, max_duration_ns: int, reorder_tolerance_ns: int = 2_000_000
    ) -> None:
        self.max_events = _positive_int("max_events", max_events, 1)
        self.max_duration_ns = _positive_int("max_duration_ns", max_duration_ns, 1)
        self.reorder_tolerance_ns = _positive_int("reorder_tolerance_ns", reorder_tolerance_ns, 0)
        capacity = self.max_events + max(self.max_events // 2, 1024)
        self._data = np.zeros(capacity, dtype=EVENT_DTYPE)
        self._t = np.zeros(capacity, dtype=np.int64)
        self._start = 0
        self._end = 0
        self._latest: int | None = None
        self._stats = BufferStats()
        self._lock = threading.Lock()  # readers and index updates (held briefly)
        self._write_lock = threading.Lock()  # one writer at a time

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        """Number of buffered events."""
        return self._end - self._start

    @property
    def capacity(self) -> int:
        """Size of the preallocated storage in events (fixed)."""
        return self._data.shape[0]

    @property
    def latest_time(self) -> int | None:
        """Time (ns) of the newest event ever accepted since the last ``clear``, or None."""
        return self._latest

    @property
    def oldest_time(self) -> int | None:
        """Time (ns) of the oldest buffered event, or None when empty."""
        with self._lock:
            return int(self._t[self._start]) if self._end > self._start else None

    @property
    def stats(self) -> BufferStats:
        """A snapshot (copy) of the counters."""
        with self._lock:
            return replace(self._stats)

    def window(self, t_start_ns: int, t_end_ns: int) -> np.ndarray:
        """Return a copy of the buffered events with ``t_start_ns <= t < t_end_ns``.

        O(log n) search plus the copy of the result.

        Args:
            t_start_ns: inclusive start (ns).
            t_end_ns: exclusive end (ns); an empty array if ``t_end_ns <= t_start_ns``.

        Returns:
            Time-ordered :data:`EVENT_DTYPE` array, shape ``(k,)``.
        """
        with self._lock:
            ts = self._t[self._start : self._end]
            i0 = int(np.searchsorted(ts, t_start_ns, side="left"))
            i1 = int(np.searchsorted(ts, t_end_ns, side="left"))
            if i1 <= i0:
                return np.empty(0, dtype=EVENT_DTYPE)
            return _raw(self._data[self._start + i0 : self._start + i1]).copy().view(EVENT_DTYPE)

    def last_n(self, n: int) -> np.ndarray:
        """Return a copy of the newest ``min(n, len(self))`` events in time order."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._lock:
            k = min(int(n), self._end - self._start)
            return _raw(self._data[self._end - k : self._end]).copy().view(EVENT_DTYPE)

    # ------------------------------------------------------------------ updates

    def clear(self) -> None:
        """Drop all events and forget ``latest_time``; the counters are kept."""
        with self._write_lock, self._lock:
            self._stats.cleared += self._end - self._start
            self._start = self._end = 0
            self._latest = None

    def append(self, events: np.ndarray) -> int:
        """Insert a chunk of events (see the module docstring for the ordering rules).

        Args:
            events: structured events (``t`` ns, ``x``, ``y``, ``p``), shape ``(n,)``, any order.

        Returns:
            Number of events of this chunk that are in the buffer after the call.
        """
        chunk = as_events(events)
        with self._write_lock:
            with self._lock:
                plan = self._merge_locked(chunk)
            if plan is None:  # nothing to store
                return 0
            chunk, pos, latest, accepted = plan
            m = chunk.shape[0]
            compacted = False
            if pos + m > self.capacity:  # make room: the live prefix [start, pos) to the front
                live = pos - self._start
                if live <= self._start:  # [0, live) is not read meanwhile: copy unlocked
                    self._move_to_front(pos)
                    compacted = True
                else:
                    with self._lock:
                        self._move_to_front(pos)
                        self._start, self._end = 0, live
                pos = live
            with self._lock:
                if compacted:
                    self._start = 0
                _raw(self._data)[pos : pos + m] = _raw(chunk)
                self._t[pos : pos + m] = chunk["t"]
                self._end = pos + m
                self._latest = latest
            return accepted

    def _move_to_front(self, pos: int) -> None:
        """Copy the events ``[start, pos)`` to ``[0, pos - start)`` (indices unchanged)."""
        live = pos - self._start
        _raw(self._data)[:live] = _raw(self._data)[self._start : pos]
        self._t[:live] = self._t[self._start : pos]

    def _merge_locked(self, chunk: np.ndarray) -> tuple[np.ndarray, int, int, int] | None:
        """Counters, expiry, merge and overflow of one chunk (under the reader lock).

        Returns:
            ``(events to write at pos, pos, new latest time, accepted)``: the buffered events
            from ``pos`` on are to be replaced by these; None when nothing is stored.
        """
        st = self._stats
        n = chunk.shape[0]
        st.received += n
        if n == 0:
            return None
        ct = chunk["t"]
        if n > 1 and not bool(np.all(ct[1:] >= ct[:-1])):
            order = np.argsort(ct, kind="stable")
            chunk, ct = _raw(chunk)[order].view(EVENT_DTYPE), ct[order]
            st.unsorted_chunks += 1
        if self._latest is not None:  # late events
            k = int(np.searchsorted(ct, self._latest - self.reorder_tolerance_ns, side="left"))
            if k:
                st.dropped_late += k
                chunk, ct = chunk[k:], ct[k:]
                if chunk.shape[0] == 0:
                    return None
        latest = int(ct[-1]) if self._latest is None else max(self._latest, int(ct[-1]))
        cutoff = latest - self.max_duration_ns  # events with t < cutoff expire
        k = int(np.searchsorted(ct, cutoff, side="left"))
        if k:  # only possible when the tolerance exceeds max_duration or the chunk is long
            st.dropped_expired += k
            chunk, ct = chunk[k:], ct[k:]
            if chunk.shape[0] == 0:  # then latest is unchanged and nothing else expires
                return None
        if chunk.shape[0] > self.max_events:  # these could never survive the overflow rule
            k = chunk.shape[0] - self.max_events
            st.dropped_overflow += k
            chunk, ct = chunk[k:], ct[k:]
        accepted = chunk.shape[0]
        # expire buffered events
        k = int(np.searchsorted(self._t[self._start : self._end], cutoff, side="left"))
        st.dropped_expired += k
        self._start += k
        # merge point: buffered events with t <= first new event stay in front
        pos = self._start + int(
            np.searchsorted(self._t[self._start : self._end], ct[0], side="right")
        )
        n_tail = self._end - pos
        order = None
        if n_tail:
            st.reordered += int(np.count_nonzero(ct < self._t[self._end - 1]))
            merged = np.concatenate([_raw(self._data[pos : self._end]), _raw(chunk)])
            order = np.argsort(np.concatenate([self._t[pos : self._end], ct]), kind="stable")
            chunk = merged[order].view(EVENT_DTYPE)
        # overflow: drop the oldest beyond max_events, first from the untouched prefix
        over = (pos - self._start) + chunk.shape[0] - self.max_events
        if over > 0:
            from_prefix = min(over, pos - self._start)
            self._start += from_prefix
            k = over - from_prefix
            if k:
                accepted -= k if order is None else int(np.count_nonzero(order[:k] >= n_tail))
                chunk = chunk[k:]
            st.dropped_overflow += over
        st.accepted += accepted
        return chunk, pos, latest, accepted
