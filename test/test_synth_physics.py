"""Physics of the generation loop: flicker, event-rate cap, sampling, event timing."""

from __future__ import annotations

import dataclasses

import numpy as np

from facealign_ros.events import EVENT_DTYPE
from training.synth.engine import _esim_inputs, generate
from training.synth.esim import EventConfig, EventSimulator, piecewise_sample_times
from training.synth.occluders import bandwidth_limit, flicker
from training.synth.scene import Interval, SceneConfig

H, W = 20, 30
QUIET = EventConfig(shot_noise_rate_hz=0.0, leak_rate_hz=0.0, contrast_sigma=0.0,
                    refractory_s=0.0)  # fmt: skip


def _interval(times_ns: np.ndarray, lum: float) -> Interval:
    n = len(times_ns)
    gt = (np.zeros((70, 2)), np.zeros(70, bool), np.eye(3), np.zeros(3))
    hf = (np.zeros(0, np.int64), np.zeros((0, 70, 2)), np.zeros((0, 70), bool))
    lum_stack = np.full((n, H, W), lum, np.float32)
    return Interval(1, times_ns, lum_stack, np.zeros((H, W, 3)), 0.01, 1.0, 0, *gt, *hf)


def test_flicker_gives_on_events_while_brightening_and_off_while_dimming() -> None:
    cfg = SceneConfig(flicker_hz=100.0, flicker_depth=0.3)
    iv = _interval(np.array([0, 50_000_000], np.int64), 0.3)  # a static scene, 50 ms
    lum, times = _esim_inputs(iv, cfg, skip_first=False)
    assert len(times) >= 16 * 5  # flicker is sampled 16 times per period
    sim = EventSimulator(W, H, QUIET, seed=0)
    sim.reset(lum[0], int(times[0]))
    ev = sim.simulate(lum[1:], times[1:])
    phase = (ev["t"] * 1e-9 * 100.0) % 1.0  # brightness = 1 + d cos(2 pi phase): rising in (.5, 1)
    rising = phase > 0.5
    assert np.all(ev["p"][rising] == 1) and np.all(ev["p"][~rising] == 0)
    swing = np.log(1.3 / 0.7)  # log peak-to-peak per half period
    per_pixel = len(ev) / (H * W) / 5  # per flicker cycle
    assert abs(per_pixel - 2 * swing / QUIET.contrast_on) <= 2.0
    np.testing.assert_allclose(flicker(np.linspace(0, 0.01, 1001), 100.0, 0.3).mean(), 1.0,
                               atol=1e-3)  # fmt: skip


def test_static_scene_without_flicker_gives_only_noise_at_the_configured_rate() -> None:
    cfg = SceneConfig(light="low")
    iv = _interval(np.array([0, 2_000_000_000], np.int64), 0.3)
    lum, times = _esim_inputs(iv, cfg, skip_first=False)
    assert len(times) == 2  # nothing moves: no extra samples
    ecfg = EventConfig(leak_rate_hz=0.2, shot_noise_rate_hz=1.0)
    sim = EventSimulator(W, H, ecfg, seed=1)
    sim.reset(lum[0], 0)
    ev = sim.simulate(lum[1:], times[1:])
    from training.synth.esim import shot_noise_rate

    expected = (float(shot_noise_rate(lum[0, 0, 0], ecfg)) + ecfg.leak_rate_hz) * H * W * 2.0
    assert abs(len(ev) - expected) < 4 * np.sqrt(expected) + 0.05 * expected


def test_bandwidth_limit_caps_every_ms_and_counts_drops() -> None:
    rng = np.random.default_rng(0)
    n = 60_000
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(1, 10_500_001, n))  # ~5.7 Mev/s over 10.5 ms
    ev["x"], ev["y"] = rng.integers(0, W, n), rng.integers(0, H, n)
    cap_rate = 2e6
    parts, dropped = [], 0
    for span in ((0, 3_333_333), (3_333_333, 6_666_667), (6_666_667, 10_500_000)):
        sel = ev[(ev["t"] > span[0]) & (ev["t"] <= span[1])]
        kept, d = bandwidth_limit(sel, cap_rate, rng, span)
        parts.append(kept)
        dropped += d
    kept = np.concatenate(parts)
    per_ms = np.bincount((kept["t"] - 1) // 1_000_000)
    assert per_ms.max() <= 2000 and per_ms[:10].min() >= 1990
    assert dropped == n - len(kept) > 0
    assert np.all(np.diff(kept["t"]) >= 0)
    # uniform dropping: the kept share is the same in both image halves
    left = (kept["x"] < W // 2).mean()
    assert abs(left - (ev["x"] < W // 2).mean()) < 0.02
    same, d0 = bandwidth_limit(ev, 0.0, rng)
    assert d0 == 0 and len(same) == n


def test_piecewise_sampling_bounds_motion_and_skips_still_spans() -> None:
    def pos(t_ns: int) -> np.ndarray:  # still for 10 ms, then 3 px/ms
        return np.array([[max(t_ns - 10_000_000, 0) * 3e-6, 5.0]])

    ts = piecewise_sample_times(0, 20_000_000, pos, max_px=1.0, probes=4)
    assert ts[0] == 0 and ts[-1] == 20_000_000 and np.all(np.diff(ts) > 0)
    steps = np.abs(np.diff([pos(int(t))[0, 0] for t in ts]))
    assert steps.max() <= 1.0 + 1e-3  # ns rounding of the sample times
    assert (ts < 10_000_000).sum() <= 3 and 30 <= len(ts) <= 36


def test_generated_events_are_sorted_and_inside_their_frame_interval() -> None:
    cfg = SceneConfig(seed=1, seconds=0.1, head="ellipsoid", motion="fast", light="dark")
    outs = list(generate(cfg))
    ends = cfg.frame_end_ns
    assert [o.interval.k for o in outs] == [1, 2, 3]
    for o in outs:
        t = o.events["t"]
        assert len(t) > 0 and np.all(np.diff(t) >= 0)
        assert t.min() > ends[o.interval.k - 1] and t.max() <= ends[o.interval.k]
        assert o.image.dtype == np.uint8 and o.image.shape == (cfg.height, cfg.width, 3)
    again = list(generate(dataclasses.replace(cfg)))
    assert all(a.events.tobytes() == b.events.tobytes() for a, b in zip(outs, again, strict=True))
