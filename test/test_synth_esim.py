"""Physics of the ESIM-style event simulator (training.synth.esim)."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_ros.events.types import EVENT_DTYPE
from training.synth.esim import (
    EventConfig,
    EventSimulator,
    adaptive_sample_times,
    shot_noise_rate,
    subframe_count,
)

H, W = 40, 50
MS = 1_000_000


def _times(n: int, step_ns: int = MS, start: int = 0) -> np.ndarray:
    return start + step_ns * np.arange(n, dtype=np.int64)


def _ramp(n: int, lo: float, hi: float) -> np.ndarray:
    """Exponential brightness ramp: equal log steps, (n, H, W)."""
    return np.exp(np.linspace(np.log(lo), np.log(hi), n))[:, None, None] * np.ones((1, H, W))


def test_static_scene_gives_noise_at_configured_rate() -> None:
    cfg = EventConfig(leak_rate_hz=0.5, shot_noise_rate_hz=2.0)
    sim = EventSimulator(W, H, cfg, seed=3)
    lum, seconds = 0.3, 4.0
    frames = np.full((9, H, W), lum)
    ev = sim.simulate(frames, _times(9, int(seconds * 1e9 / 8)))
    expected = (shot_noise_rate(lum, cfg) + cfg.leak_rate_hz) * H * W * seconds
    assert abs(len(ev) - expected) < 0.08 * expected
    # leak is ON only; shot noise is half ON: the ON share is known too
    on_share = (0.5 * shot_noise_rate(lum, cfg) + cfg.leak_rate_hz) / (
        shot_noise_rate(lum, cfg) + cfg.leak_rate_hz
    )
    assert abs(ev["p"].mean() - on_share) < 0.05


def test_noise_rate_rises_in_the_dark() -> None:
    cfg = EventConfig(leak_rate_hz=0.0)
    counts = []
    for lum in (1.0, 0.005):
        sim = EventSimulator(W, H, cfg, seed=1)
        counts.append(len(sim.simulate(np.full((3, H, W), lum), _times(3, 10**9))))
    assert counts[1] > 5 * counts[0]


def test_brightening_ramp_gives_on_events_only() -> None:
    cfg = EventConfig(shot_noise_rate_hz=0.0, leak_rate_hz=0.0)
    sim = EventSimulator(W, H, cfg, seed=0)
    ev = sim.simulate(_ramp(51, 0.1, 0.6), _times(51))
    assert ev.dtype == EVENT_DTYPE
    assert (ev["p"] == 0).sum() == 0
    expected = np.log(6.0) / cfg.contrast_on * H * W
    assert abs(len(ev) - expected) < 0.1 * expected


def test_darkening_ramp_with_noise_is_mostly_off() -> None:
    sim = EventSimulator(W, H, EventConfig(), seed=0)
    ev = sim.simulate(_ramp(51, 0.6, 0.1), _times(51))
    assert (ev["p"] == 1).sum() < 0.02 * len(ev)


@pytest.mark.parametrize("contrast", [0.1, 0.2, 0.4])
def test_event_count_scales_with_inverse_threshold(contrast: float) -> None:
    cfg = EventConfig(contrast_on=contrast, contrast_off=contrast, contrast_sigma=0.0,
                      shot_noise_rate_hz=0.0, leak_rate_hz=0.0, refractory_s=0.0)  # fmt: skip
    ev = EventSimulator(W, H, cfg, seed=0).simulate(_ramp(41, 0.05, 0.8), _times(41))
    per_pixel = len(ev) / (H * W)
    assert abs(per_pixel - np.log(16.0) / contrast) <= 1.0


def test_timestamps_sorted_and_inside_each_call_interval() -> None:
    rng = np.random.default_rng(0)
    sim = EventSimulator(W, H, EventConfig(), seed=2)
    start = 5 * MS
    sim.reset(np.full((H, W), 0.3), start)
    prev = start
    for _ in range(4):
        frames = 0.3 * np.exp(rng.normal(0, 0.6, size=(5, H, W)))
        times = _times(5, MS // 5, prev + MS // 5)
        ev = sim.simulate(frames, times)
        assert len(ev) > 0
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["t"].min() > prev and ev["t"].max() <= times[-1]
        assert ev["x"].max() < W and ev["y"].max() < H
        prev = int(times[-1])


def test_events_fall_between_the_subframes_that_caused_them() -> None:
    cfg = EventConfig(shot_noise_rate_hz=0.0, leak_rate_hz=0.0)
    sim = EventSimulator(W, H, cfg, seed=0)
    frames = np.full((4, H, W), 0.2)
    frames[2:, :, : W // 2] = 0.8  # the left half brightens between sub-frames 1 and 2
    times = np.array([0, 10, 20, 30], np.int64) * MS
    ev = sim.simulate(frames, times)
    assert len(ev) > 0 and np.all(ev["x"] < W // 2) and np.all(ev["p"] == 1)
    assert ev["t"].min() > 10 * MS and ev["t"].max() <= 20 * MS
    # linear interpolation spreads the crossings over the interval, not on a frame time
    assert len(np.unique(ev["t"])) > 1


def test_refractory_period_limits_the_event_rate() -> None:
    base = {"shot_noise_rate_hz": 0.0, "leak_rate_hz": 0.0, "contrast_sigma": 0.0}
    fast = _ramp(3, 0.01, 1.0)
    times = np.array([0, 1, 2], np.int64) * MS  # ~9 thresholds per ms
    free = EventSimulator(W, H, EventConfig(refractory_s=0.0, **base), 0).simulate(fast, times)
    slow = EventSimulator(W, H, EventConfig(refractory_s=5e-4, **base), 0).simulate(fast, times)
    assert len(slow) < 0.5 * len(free)
    px = slow[(slow["x"] == 3) & (slow["y"] == 4)]
    assert np.all(np.diff(px["t"]) >= 500_000)


def test_state_carries_across_calls() -> None:
    cfg = EventConfig(shot_noise_rate_hz=0.0)
    frames, times = _ramp(21, 0.1, 0.9), _times(21)
    whole = EventSimulator(W, H, cfg, seed=5).simulate(frames, times)
    sim = EventSimulator(W, H, cfg, seed=5)
    parts = np.concatenate([sim.simulate(frames[:9], times[:9]),
                            sim.simulate(frames[9:], times[9:])])  # fmt: skip
    assert np.array_equal(
        np.sort(whole, order=["t", "y", "x"]), np.sort(parts, order=["t", "y", "x"])
    )


def test_deterministic_by_seed() -> None:
    rng = np.random.default_rng(1)
    frames = 0.3 * np.exp(rng.normal(0, 0.5, size=(6, H, W)))
    a = EventSimulator(W, H, EventConfig(), seed=9).simulate(frames, _times(6))
    b = EventSimulator(W, H, EventConfig(), seed=9).simulate(frames, _times(6))
    c = EventSimulator(W, H, EventConfig(), seed=10).simulate(frames, _times(6))
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_bad_input_is_rejected() -> None:
    sim = EventSimulator(W, H)
    with pytest.raises(ValueError):
        sim.simulate(np.zeros((2, H + 1, W)), _times(2))
    with pytest.raises(ValueError):
        sim.simulate(np.zeros((2, H, W)), np.array([5, 5]))


def test_subframe_count_and_adaptive_times() -> None:
    a = np.zeros((3, 2))
    assert subframe_count(a, a + [0.0, 3.5]) == 4
    assert subframe_count(a, a) == 1

    def pos(t_ns: int) -> np.ndarray:  # still until 10 ms, then 2 px per ms
        return np.array([[max(t_ns - 10 * MS, 0) * 2e-6, 0.0]])

    ts = adaptive_sample_times(0, 20 * MS, pos, max_px=1.0)
    assert ts[0] == 0 and ts[-1] == 20 * MS and np.all(np.diff(ts) > 0)
    steps = np.abs(np.diff([pos(int(t))[0, 0] for t in ts]))
    assert steps.max() <= 1.0
    assert (ts < 10 * MS).sum() <= 3  # sparse while still
    assert (ts > 10 * MS).sum() >= 20  # dense while moving
