"""EventBuffer: limits, ordering, late drops, windows, and a property test against a model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facealign_ros.events.buffer import EventBuffer
from facealign_ros.events.types import EVENT_DTYPE, empty_events, make_events


def chunk(ts, x=None) -> np.ndarray:
    """Events at times ``ts``; ``x`` tags events (default: their index)."""
    ts = list(ts)
    x = list(range(len(ts))) if x is None else list(x)
    return make_events(ts, x, [0] * len(ts), [1] * len(ts))


@pytest.mark.parametrize(
    "args",
    [(0, 10), (-1, 10), (10, 0), (10, -5), (10, 10, -1), (1.5, 10), (True, 10), (10, "1")],
)
def test_constructor_validates(args):
    with pytest.raises(ValueError):
        EventBuffer(*args)


def test_append_and_window_boundaries():
    buf = EventBuffer(max_events=100, max_duration_ns=10**9)
    assert buf.append(chunk([10, 20, 20, 30])) == 4
    assert len(buf) == 4 and buf.latest_time == 30 and buf.oldest_time == 10
    w = buf.window(20, 30)  # start inclusive, end exclusive
    assert w.dtype == EVENT_DTYPE and list(w["t"]) == [20, 20]
    assert list(buf.window(0, 100)["t"]) == [10, 20, 20, 30]
    assert len(buf.window(30, 30)) == 0 and len(buf.window(40, 10)) == 0
    w[:] = 0  # a copy: the buffer is untouched
    assert list(buf.window(20, 31)["t"]) == [20, 20, 30]
    assert list(buf.last_n(2)["t"]) == [20, 30]
    assert len(buf.last_n(0)) == 0 and len(buf.last_n(99)) == 4
    with pytest.raises(ValueError):
        buf.last_n(-1)
    assert buf.append(empty_events()) == 0


def test_unsorted_chunk_is_stably_sorted():
    buf = EventBuffer(100, 10**9)
    buf.append(chunk([30, 10, 20, 10], x=[0, 1, 2, 3]))
    out = buf.window(0, 100)
    assert list(out["t"]) == [10, 10, 20, 30]
    assert list(out["x"]) == [1, 3, 2, 0]  # ties keep arrival order
    assert buf.stats.unsorted_chunks == 1


def test_late_events_dropped_and_tolerated_ones_merged():
    buf = EventBuffer(100, 10**9, reorder_tolerance_ns=2_000_000)
    buf.append(chunk([1_000_000, 5_000_000, 10_000_000], x=[0, 1, 2]))
    # 7.9 ms is late (< 10 - 2 ms); 8 ms, 9 ms and a tie at 10 ms are merged in order
    n = buf.append(chunk([7_900_000, 8_000_000, 10_000_000, 9_000_000], x=[3, 4, 5, 6]))
    assert n == 3
    out = buf.window(0, 10**9)
    assert list(out["t"]) == [1_000_000, 5_000_000, 8_000_000, 9_000_000, 10_000_000, 10_000_000]
    assert list(out["x"]) == [0, 1, 4, 6, 2, 5]  # the buffered tie stays first
    s = buf.stats
    assert s.dropped_late == 1 and s.reordered == 2 and s.accepted == 6


def test_overflow_drops_oldest():
    buf = EventBuffer(max_events=5, max_duration_ns=10**9)
    buf.append(chunk(range(3)))
    buf.append(chunk(range(3, 11)))
    assert list(buf.window(0, 100)["t"]) == [6, 7, 8, 9, 10]
    assert buf.stats.dropped_overflow == 6


def test_expiry_by_duration():
    buf = EventBuffer(max_events=100, max_duration_ns=10, reorder_tolerance_ns=0)
    buf.append(chunk([0, 5, 10]))
    buf.append(chunk([16]))  # cutoff 6: 0 and 5 expire, 10 stays
    assert list(buf.window(-100, 100)["t"]) == [10, 16]
    assert buf.stats.dropped_expired == 2


def test_clear_keeps_counters_and_forgets_latest():
    buf = EventBuffer(10, 100)
    buf.append(chunk([50, 60]))
    buf.clear()
    assert len(buf) == 0 and buf.latest_time is None and buf.oldest_time is None
    assert buf.append(chunk([1])) == 1  # not late after clear
    s = buf.stats
    assert s.cleared == 2 and s.received == 3


def test_compaction_keeps_memory_bounded_and_content_right():
    buf = EventBuffer(max_events=50, max_duration_ns=10**12)
    cap = buf.capacity
    rng = np.random.default_rng(0)
    t = 0
    for _ in range(400):
        n = int(rng.integers(1, 40))
        buf.append(chunk(range(t, t + n)))
        t += n
        assert buf.capacity == cap and len(buf) <= 50
    assert list(buf.window(0, t)["t"]) == list(range(t - 50, t))


@pytest.mark.parametrize("max_duration", [120_000, 10**12])  # duration-bound (unlocked copy) / full
def test_windows_cut_during_compactions_are_whole(max_duration):
    """A reader thread cutting windows while the writer compacts sees no torn or gappy data."""
    import threading

    buf = EventBuffer(max_events=200_000, max_duration_ns=max_duration, reorder_tolerance_ns=0)
    done = threading.Event()
    errors: list[str] = []
    seen = [0]

    def reader() -> None:
        while not done.is_set():
            latest = buf.latest_time
            if latest is None:
                continue
            w = buf.window(0, latest + 1)  # everything buffered, old events included
            if w.size:
                t = w["t"]
                if not (np.all(np.diff(t) == 1) and np.array_equal(w["x"], t % 1000)):
                    errors.append(f"torn window {t[:3]}..{t[-3:]}")
                seen[0] += 1

    th = threading.Thread(target=reader)
    th.start()
    t, n = 0, 4999
    for _ in range(300):
        ts = np.arange(t, t + n)
        buf.append(make_events(ts, ts % 1000, np.zeros(n), np.ones(n)))
        t += n
    done.set()
    th.join()
    assert not errors, errors[:3]
    assert seen[0] > 0 and list(buf.window(t - 300, t)["t"]) == list(range(t - 300, t))


def test_accepts_other_structured_dtypes():
    dt = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
    buf = EventBuffer(10, 100)
    buf.append(np.array([(3, 2, 7, 1)], dtype=dt))
    out = buf.last_n(1)
    assert (out["t"][0], out["x"][0], out["y"][0], out["p"][0]) == (7, 3, 2, 1)
    with pytest.raises(TypeError):
        buf.append(np.zeros(3))


# ----------------------------------------------------------------------------- model check


class NaiveBuffer:
    """Reference: events sorted by (t, arrival index); rules applied to the whole list."""

    def __init__(self, max_events: int, max_duration: int, tolerance: int) -> None:
        self.max_events, self.max_duration, self.tolerance = max_events, max_duration, tolerance
        self.events: list[tuple[int, int]] = []  # (t, arrival index)
        self.latest: int | None = None
        self.late = self.expired = self.overflow = 0
        self.next_id = 0

    def append(self, ts: list[int]) -> int:
        new = [(t, self.next_id + i) for i, t in enumerate(ts)]
        self.next_id += len(ts)
        if self.latest is not None:
            kept = [e for e in new if e[0] >= self.latest - self.tolerance]
            self.late += len(new) - len(kept)
            new = kept
        if not new:
            return 0
        self.latest = max([e[0] for e in new] + ([self.latest] if self.latest is not None else []))
        events = sorted(self.events + new)
        cutoff = self.latest - self.max_duration
        kept = [e for e in events if e[0] >= cutoff]
        self.expired += len(events) - len(kept)
        drop = max(0, len(kept) - self.max_events)
        self.overflow += drop
        self.events = kept[drop:]
        ids = {e[1] for e in new}
        return sum(e[1] in ids for e in self.events)


@settings(max_examples=60, deadline=None)
@given(
    max_events=st.integers(1, 12),
    max_duration=st.integers(1, 40),
    tolerance=st.integers(0, 15),
    slack=st.integers(0, 4),
    chunks=st.lists(
        st.tuples(st.integers(-3, 8), st.lists(st.integers(-12, 6), max_size=8)), max_size=25
    ),
)
def test_matches_naive_model(max_events, max_duration, tolerance, slack, chunks):
    buf = EventBuffer(max_events, max_duration, tolerance)
    # shrink the storage so that compaction happens often (capacity >= max_events holds)
    buf._data = np.zeros(max_events + slack, dtype=EVENT_DTYPE)
    buf._t = np.zeros(max_events + slack, dtype=np.int64)
    model = NaiveBuffer(max_events, max_duration, tolerance)
    clock, arrival = 0, 0
    for step, offsets in chunks:
        clock += step
        ts = [clock + o for o in offsets]
        ids = list(range(arrival, arrival + len(ts)))
        arrival += len(ts)
        n = buf.append(make_events(ts, ids, [0] * len(ts), [1] * len(ts)))  # x = arrival id
        assert n == model.append(ts)
        got = buf.window(-(10**9), 10**9)
        assert list(got["t"]) == [e[0] for e in model.events]
        assert list(got["x"]) == [e[1] for e in model.events]
        s = buf.stats
        assert (s.dropped_late, s.dropped_expired, s.dropped_overflow) == (
            model.late,
            model.expired,
            model.overflow,
        )
        assert s.received == len(buf) + s.dropped_late + s.dropped_expired + s.dropped_overflow
        assert buf.latest_time == model.latest
