"""``facealign_ros.events.flicker``: periodic bursts dropped, one-off bursts kept."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facealign_ros.events import EVENT_DTYPE
from facealign_ros.events.flicker import FlickerFilter

MS = 1_000_000


def events(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """``(t ns, x, y, p)`` rows, sorted by time."""
    ev = np.zeros(len(rows), EVENT_DTYPE)
    for k, name in enumerate(("t", "x", "y", "p")):
        ev[name] = [r[k] for r in rows]
    return ev[np.argsort(ev["t"], kind="stable")]


def flicker_pixel(x: int, y: int, hz: float, cycles: int, per_burst: int = 3) -> list:
    """ON bursts at the rising half and OFF bursts at the falling half of every cycle."""
    period = int(1e9 / hz)
    rows = []
    for c in range(cycles):
        for k in range(per_burst):
            rows.append((c * period + k * MS // 2, x, y, 1))
            rows.append((c * period + period // 2 + k * MS // 2, x, y, 0))
    return rows


def test_a_100_hz_pixel_is_dropped_after_two_periodic_bursts() -> None:
    f = FlickerFilter(8, 8)
    ev = events(flicker_pixel(2, 3, 100.0, cycles=6))
    keep = f.keep(ev)
    on = ev["p"] == 1
    # bursts 0, 1, 2 of each polarity pass (the streak reaches 2 at the third), the rest go
    assert keep[on].tolist() == [True] * 6 + [False] * 12
    assert keep[~on].tolist() == [True] * 6 + [False] * 12
    assert (f.seen, f.dropped) == (36, 24)


def test_one_off_bursts_and_other_frequencies_pass() -> None:
    f = FlickerFilter(8, 8)
    motion = [(k * MS // 4, 5, 5, 1) for k in range(8)]  # an edge passing: one burst
    slow = flicker_pixel(1, 1, 30.0, cycles=5)  # 30 Hz: below the band
    fast = flicker_pixel(6, 6, 400.0, cycles=20, per_burst=1)  # 400 Hz: above it
    ev = events(motion + slow + fast)
    assert f.keep(ev).all()


def test_state_carries_across_calls_and_reset_forgets_it() -> None:
    rows = flicker_pixel(0, 0, 120.0, cycles=6)
    ev = events(rows)
    whole = FlickerFilter(4, 4).keep(ev)
    split = FlickerFilter(4, 4)
    parts = np.concatenate([split.keep(ev[:10]), split.keep(ev[10:])])
    assert np.array_equal(whole, parts) and not whole.all()
    split.reset()
    assert split.keep(ev[:6]).all()  # history forgotten: the first bursts pass again


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 400))
def test_random_sparse_events_pass(seed: int, n: int) -> None:
    """Events far apart in time (no pixel fires twice within 15 ms) are never flicker."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.integers(15 * MS, 40 * MS, n))
    ev = events(
        [
            (int(ti), int(rng.integers(0, 16)), int(rng.integers(0, 16)), int(rng.integers(0, 2)))
            for ti in t
        ]
    )  # noqa: E501
    assert FlickerFilter(16, 16).keep(ev).all()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="no pixels"):
        FlickerFilter(0, 4)
    with pytest.raises(ValueError, match="0 < min < max"):
        FlickerFilter(4, 4, min_hz=150, max_hz=80)
    with pytest.raises(ValueError, match="half the shortest period"):
        FlickerFilter(4, 4, gap_ns=4 * MS)  # 150 Hz: 6.7 ms period
