"""Seeded synthetic event streams for benchmarks (sensor-readout-like and worst-case sparse)."""

from __future__ import annotations

import numpy as np

from facealign_ros.events.types import EVENT_DTYPE


def readout_stream(
    width: int, height: int, n_events: int, rate_mev_s: float = 20.0, seed: int = 0
) -> np.ndarray:
    """Events shaped like a moving textured scene read out by an EVT 3.0 sensor.

    Several edges sweep across the sensor; each readout burst is a short horizontal run of
    adjacent pixels on one row with one polarity and one microsecond timestamp, so a stream
    mixes single events and vector words as real cameras do.

    Args:
        width: sensor width in pixels.
        height: sensor height in pixels.
        n_events: approximate number of events to produce.
        rate_mev_s: mean event rate in millions of events per second (sets the time span).
        seed: RNG seed.

    Returns:
        :data:`EVENT_DTYPE` events sorted by time, times multiples of 1000 ns.
    """
    rng = np.random.default_rng(seed)
    mean_len = 3.0
    n_bursts = max(1, int(n_events / mean_len))
    duration_us = max(1, int(n_events / rate_mev_s))
    t_us = np.sort(rng.integers(0, duration_us, n_bursts))
    n_edges = 8
    edge = rng.integers(0, n_edges, n_bursts)
    x0 = rng.uniform(0, width, n_edges)
    speed = rng.uniform(-2000.0, 2000.0, n_edges)  # px/s
    pol = rng.integers(0, 2, n_edges)
    xs = (x0[edge] + speed[edge] * t_us * 1e-6 + rng.normal(0, 6, n_bursts)) % width
    ys = rng.integers(0, height, n_bursts)
    lengths = np.minimum(rng.geometric(1.0 / mean_len, n_bursts), 12)
    rep = np.repeat(np.arange(n_bursts), lengths)
    offs = np.arange(rep.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    x = np.minimum(xs.astype(np.int64)[rep] + offs, width - 1)
    keep = np.ones(rep.size, dtype=bool)
    keep[1:] = ~((rep[1:] == rep[:-1]) & (x[1:] == x[:-1]))  # clipped duplicates at the border
    out = np.empty(int(keep.sum()), dtype=EVENT_DTYPE)
    out["t"] = t_us[rep][keep] * 1000
    out["x"] = x[keep]
    out["y"] = ys[rep][keep]
    out["p"] = (pol[edge] ^ (rng.random(n_bursts) < 0.1))[rep][keep]
    return out


def sparse_stream(width: int, height: int, n_events: int, seed: int = 0) -> np.ndarray:
    """Worst case for EVT 3.0: isolated events at random pixels, about one per microsecond."""
    rng = np.random.default_rng(seed)
    out = np.empty(n_events, dtype=EVENT_DTYPE)
    out["t"] = np.sort(rng.integers(0, 2 * n_events, n_events)) * 1000
    out["x"] = rng.integers(0, width, n_events)
    out["y"] = rng.integers(0, height, n_events)
    out["p"] = rng.integers(0, 2, n_events)
    return out
