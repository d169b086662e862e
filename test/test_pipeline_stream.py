"""EventStream: sensor clock -> ROS time with drift, 24-bit wraps, bag loops and bad packets."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_ros.bag import make_event_packet
from facealign_ros.events import EVENT_DTYPE, encode, make_events
from facealign_ros.pipeline import EventStream, InputError, PipelineConfig
from facealign_ros.pipeline.config import MAX_SENSOR_SIDE

W, H = 64, 48
T0 = 1_700_000_000 * 10**9
WRAP_US = 1 << 24


def stream() -> EventStream:
    return EventStream(2 * 10**9, 100_000, loop_threshold_ns=500_000_000, max_skew_ns=200_000_000)


def packets(seconds: float, drift_ppm: float, start_ns: int, seed: int = 0):
    """Yield ``(packet, true ROS times)``: 1 packet / 20 ms with 3 events.

    The evt3 clock starts at 0; stamps = ROS time of the first event (sensor time scaled by the
    drift) + 0..2 ms jitter.
    """
    rng = np.random.default_rng(seed)
    for k in range(int(seconds * 50)):
        t_us = k * 20_000 + np.array([0, 5, 9])
        ev = make_events(t_us * 1000, [1, 2, 3], [4, 5, 6], [1, 0, 1])
        true = start_ns + (t_us * 1000 * (1 + drift_ppm * 1e-6)).astype(np.int64)
        stamp = int(true[0]) + int(rng.integers(0, 2_000_000))
        yield make_event_packet(encode(ev, "evt3", W, H), W, H, "evt3", k, 0, stamp), true


@pytest.mark.parametrize("drift_ppm", [0.0, 80.0])
def test_clock_follows_drift_across_a_wrap(drift_ppm):
    s = stream()
    errs = []
    for msg, true in packets(20.0, drift_ppm, T0):  # 20 s > one 16.78 s evt3 wrap
        s.note_stamp(int(msg.header.stamp.sec) * 10**9 + msg.header.stamp.nanosec)
        s.push(msg)
        errs.append(abs(s.buffer.latest_time - int(true[-1])))
    assert s.decoder is not None and s.decoder.stats.time_wraps == 1
    assert s.clock.stats.resets == 0
    assert max(errs[100:]) < 2_500_000  # within the stamp jitter, after settling


def test_bag_loop_resets_everything():
    s = stream()
    for msg, _ in packets(1.0, 0.0, T0):
        s.note_stamp(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
        s.push(msg)
    assert len(s.buffer) > 0
    first = True
    for msg, true in packets(0.5, 0.0, T0):  # the same recording again
        looped = s.note_stamp(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
        assert looped == first
        first = False
        s.push(msg)
        assert abs(s.buffer.latest_time - int(true[-1])) < 2_500_000
    assert s.loops == 1


def test_small_step_back_is_rejected_not_a_loop():
    s = stream()
    s.note_stamp(T0)
    with pytest.raises(InputError) as err:
        s.note_stamp(T0 - 1_000_000)
    assert err.value.reason == "time_backwards" and s.loops == 0


def test_garbage_events_far_from_the_stamp_are_dropped():
    s = stream()
    msgs = list(packets(1.0, 0.0, T0))
    for msg, _ in msgs[:10]:
        s.push(msg)
    # a packet whose later events are 3 s after its first (impossible for a 1 ms packet)
    ev = make_events(np.array([200_000, 3_200_000]) * 1000, [1, 2], [1, 2], [1, 1])
    bad = make_event_packet(encode(ev, "evt3", W, H), W, H, "evt3", 99, 0, T0 + 200_000_000)
    with pytest.raises(InputError) as err:
        s.push(bad)
    assert err.value.reason == "event_skew"
    assert s.buffer.latest_time < T0 + 10**9


def test_new_camera_geometry_after_many_packets():
    s = stream()
    for msg, _ in list(packets(0.2, 0.0, T0))[:3]:
        s.push(msg)
    ev = make_events([0], [1], [1], [1])
    other = [make_event_packet(encode(ev, "evt3", 32, 32), 32, 32, "evt3", k, 0, T0 + k)
             for k in range(25)]  # fmt: skip
    reasons = []
    for msg in other:
        try:
            s.push(msg)
        except InputError as exc:
            reasons.append(exc.reason)
    assert reasons == ["packet_mismatch"] * 19
    assert s.size == (32, 32)


@pytest.mark.parametrize("size", [(MAX_SENSOR_SIDE + 1, H), (W, 32768), (32768, 32768)])
def test_implausible_sensor_size_is_refused(size):
    # a packet claiming a huge sensor would lock the stream onto it, and every face search then
    # needs GBs (32768 px: far past any machine's memory)
    s = stream()
    ev = make_events([0], [1], [1], [1])
    with pytest.raises(InputError, match=str(MAX_SENSOR_SIDE)) as err:
        s.push(make_event_packet(encode(ev, "evt3", W, H), *size, "evt3", 0, 0, T0))
    assert err.value.reason == "bad_packet" and s.size is None
    s.push(make_event_packet(encode(ev, "evt3", W, H), W, H, "evt3", 1, 0, T0))
    assert s.size == (W, H)
    with pytest.raises(ValueError, match="sensor_width"):
        PipelineConfig(sensor_width=MAX_SENSOR_SIDE + 1, sensor_height=H)


def test_anti_flicker_drops_a_flickering_pixel_and_counts_it():
    """A pixel firing at 100 Hz is dropped after two periods; a moving edge's events pass."""
    on = EventStream(10**9, 10**6, 10**9, 10**9, flicker_band_hz=(80.0, 150.0))
    off = EventStream(10**9, 10**6, 10**9, 10**9)
    t = np.arange(0, 100_000_000, 5_000_000)  # both polarities alternate every 5 ms: 100 Hz
    ev = make_events(
        t // 1000 * 1000, np.full(t.size, 3), np.full(t.size, 4), np.arange(t.size) % 2
    )
    edge = make_events(
        [50_000_000 + k * 1000 for k in range(5)], [10 + k for k in range(5)], [9] * 5, [1] * 5
    )
    both = np.concatenate([ev, edge])
    both = both[np.argsort(both["t"], kind="stable")].astype(EVENT_DTYPE)
    for s in (on, off):
        s.push(make_event_packet(encode(both, "evt3", W, H), W, H, "evt3", 0, 0, T0 + 100_000_000))
    assert len(off.buffer) == both.size
    assert len(on.buffer) == both.size - on.stats()["flicker_events_dropped"]
    assert 10 <= on.stats()["flicker_events_dropped"] <= ev.size - 4  # the train, after 2 periods
    kept = on.buffer.window(0, 2**62)
    assert np.count_nonzero(kept["y"] == 9) == 5  # the edge passed
    assert "flicker_events_dropped" not in off.stats()
    with pytest.raises(ValueError, match="anti_flicker_min_hz"):
        PipelineConfig(anti_flicker=True, anti_flicker_min_hz=200.0)


def test_a_zero_or_negative_stamp_is_unstamped_and_leaves_the_stream_as_it_was():
    s = stream()
    assert s.note_stamp(T0) is False
    for bad in (0, -5):
        with pytest.raises(InputError) as err:
            s.note_stamp(bad)
        assert err.value.reason == "unstamped" and "header stamp 0" in str(err.value)
    assert s.last_stamp_ns == T0 and s.loops == 0  # not taken for a bag loop


def test_a_packet_over_the_buffer_size_keeps_its_newest_events():
    s = EventStream(2 * 10**9, 500, loop_threshold_ns=500_000_000, max_skew_ns=200_000_000)
    t_us = np.arange(2000) * 5  # 2 000 events in 10 ms: four times what the buffer holds
    ev = make_events(t_us * 1000, t_us % W, (t_us // W) % H, t_us % 2)
    msg = make_event_packet(encode(ev, "evt3", W, H), W, H, "evt3", 0, 0, T0)
    s.note_stamp(T0)
    assert s.push(msg) == 500
    assert s.decoder is not None and s.decoder.stats.dropped_overflow == 1500
    assert s.stats()["buffer_dropped"] == 1500
    kept = s.buffer.window(0, 2**62)
    assert kept.shape[0] == 500 and kept["x"][-1] == ev["x"][-1]  # the newest ones


def test_a_host_clock_step_costs_half_a_second_not_the_clock_window():
    s = stream()
    skewed = []
    for k, (msg, _) in enumerate(packets(12.0, 0.0, T0)):  # 1 packet / 20 ms
        if k >= 250:  # the host clock steps 300 ms forward 5 s in
            t = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec + 300_000_000
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, 10**9)
        s.note_stamp(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
        try:
            s.push(msg)
        except InputError as exc:
            assert exc.reason == "event_skew"
            skewed.append(k)
    assert s.clock.stats.resets == 1
    assert skewed and skewed[0] == 250 and len(skewed) <= 27  # ~0.5 s, not the 20 s window
