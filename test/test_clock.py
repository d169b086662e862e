"""Sensor clock -> ROS time estimation: offset, drift, latency jitter, loops."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_ros.events.clock import SensorClock

MS = 1_000_000


def packets(seconds: float, offset_ns: int, skew_ppm: float = 0.0, seed: int = 0, t0: int = 0):
    """(stamp, sensor) pairs of 1 ms packets with exponential transport latency (mean 2 ms)."""
    rng = np.random.default_rng(seed)
    sensor = t0 + np.arange(int(seconds * 1000)) * MS
    true_ros = sensor + offset_ns + (skew_ppm * 1e-6 * (sensor - t0)).astype(np.int64)
    stamp = true_ros + rng.exponential(2 * MS, sensor.size).astype(np.int64)
    return stamp, sensor, true_ros


def test_offset_under_latency_jitter() -> None:
    clock = SensorClock()
    stamp, sensor, true_ros = packets(5.0, offset_ns=1_700_000_000 * 10**9)
    for s, e in zip(stamp, sensor, strict=True):
        clock.observe(s, e)
    err = clock.to_ros(sensor[-2000:]) - true_ros[-2000:]
    assert np.abs(err).max() < 0.2 * MS
    assert clock.to_sensor(int(true_ros[-1])) == pytest.approx(int(sensor[-1]), abs=0.2 * MS)


def test_drift_is_followed() -> None:
    clock = SensorClock(window_s=20.0)
    stamp, sensor, true_ros = packets(60.0, offset_ns=5 * 10**9, skew_ppm=80.0, seed=1)
    errs = []
    for i, (s, e) in enumerate(zip(stamp, sensor, strict=True)):
        clock.observe(s, e)
        if i > 5000 and i % 997 == 0:
            errs.append(clock.to_ros(int(e)) - int(true_ros[i]))
    assert max(abs(x) for x in errs) < 0.3 * MS  # a constant offset would be 4.8 ms off
    assert clock.stats.skew_ppm == pytest.approx(80.0, abs=15.0)
    assert clock.stats.resets == 0


def test_bag_loop_restarts_the_estimate() -> None:
    clock = SensorClock()
    s1, e1, _ = packets(3.0, offset_ns=10 * 10**9)
    for s, e in zip(s1, e1, strict=True):
        assert not clock.observe(s, e) or s == s1[0]
    # the bag loops: sensor time starts over while ROS time goes on
    s2, e2, r2 = packets(3.0, offset_ns=10 * 10**9 + 3 * 10**9, seed=2)
    restarted = [clock.observe(s, e) for s, e in zip(s2, e2, strict=True)]
    assert restarted[0] and not any(restarted[1:])
    assert clock.stats.resets == 1
    assert abs(clock.to_ros(int(e2[-1])) - int(r2[-1])) < 0.2 * MS


@pytest.mark.parametrize("step_ms", [300, -300, 150, -150])
def test_a_host_clock_step_restarts_the_estimate_soon(step_ms: int) -> None:
    # chrony/NTP steps the host clock by less than jump_s: before, the old minima held the
    # envelope for the whole 20 s window and the pipeline dropped every packet's events
    clock = SensorClock()
    stamp, sensor, true_ros = packets(6.0, offset_ns=10**12)
    stamp[3000:] += step_ms * MS
    true_ros[3000:] += step_ms * MS
    restarts = [
        i for i, (s, e) in enumerate(zip(stamp, sensor, strict=True)) if clock.observe(s, e)
    ]
    assert len(restarts) == 1 and clock.stats.resets == 1
    delay = restarts[0] - 3000  # packets of 1 ms
    assert (delay <= 1) if step_ms < 0 else (500 <= delay <= 510)  # a rise must last 0.5 s
    assert abs(clock.to_ros(int(sensor[-1])) - int(true_ros[-1])) < 0.3 * MS


def test_late_packets_are_latency_not_a_step() -> None:
    clock = SensorClock()
    stamp, sensor, true_ros = packets(6.0, offset_ns=10**12)
    stamp[2000] += 400 * MS  # one packet 0.4 s late
    stamp[3000:3400] += 150 * MS  # 0.4 s of packets all late (a stalled host), then back
    for s, e in zip(stamp, sensor, strict=True):
        assert not clock.observe(s, e)
    assert abs(clock.to_ros(int(sensor[-1])) - int(true_ros[-1])) < 0.3 * MS


def test_not_ready_and_bad_arguments() -> None:
    clock = SensorClock()
    assert not clock.ready
    with pytest.raises(RuntimeError, match="no packet"):
        clock.to_ros(0)
    with pytest.raises(ValueError, match="positive"):
        SensorClock(window_s=0)
    with pytest.raises(ValueError, match="positive"):
        SensorClock(step_s=0)
