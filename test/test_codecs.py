"""Known-answer, round-trip and fuzz tests for the event codecs."""

from __future__ import annotations

import array

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facealign_ros.events import (
    DECODE_ENCODINGS,
    EVENT_DTYPE,
    DecodeError,
    Decoder,
    encode,
    make_events,
)
from facealign_ros.events import evt3 as E  # noqa: N812
from facealign_ros.events.types import TRIGGER_DTYPE, concat_events, concat_structured

W, H = 640, 480


def words(*ws: int) -> bytes:
    """Pack 16-bit words little-endian."""
    return np.array(ws, dtype="<u2").tobytes()


def w(code: int, payload: int) -> int:
    return (code << 12) | payload


def tuples(ev: np.ndarray) -> list[tuple[int, int, int, int]]:
    return [(int(e["t"]), int(e["x"]), int(e["y"]), int(e["p"])) for e in ev]


# ----------------------------------------------------------------------------- evt3 known answers


def test_evt3_addr_x_event() -> None:
    dec = Decoder("evt3", W, H)
    ev = dec.decode(
        words(w(E.TIME_HIGH, 1), w(E.TIME_LOW, 5), w(E.ADDR_Y, 10), w(E.ADDR_X, (1 << 11) | 3))
    )
    assert ev.dtype == EVENT_DTYPE
    assert tuples(ev) == [(((1 << 12) | 5) * 1000, 3, 10, 1)]
    assert dec.stats.events == 1 and dec.stats.words == 4


def test_evt3_words_before_first_time_high_are_skipped() -> None:
    dec = Decoder("evt3", W, H)
    ev = dec.decode(
        words(w(E.ADDR_Y, 10), w(E.ADDR_X, 3), w(E.TIME_LOW, 7), w(E.TIME_HIGH, 2), w(E.ADDR_X, 4))
    )
    # ADDR_Y 10 was skipped, so y is still 0; TIME_LOW 7 was skipped, so low is 0.
    assert tuples(ev) == [((2 << 12) * 1000, 4, 0, 0)]
    assert dec.stats.skipped_before_time == 3


def test_evt3_vectors_and_addr_x_after_vect_base_x() -> None:
    dec = Decoder("evt3", W, H)
    ev = dec.decode(
        words(
            w(E.TIME_HIGH, 0),
            w(E.TIME_LOW, 1),
            w(E.ADDR_Y, 2),
            w(E.VECT_BASE_X, 100),  # polarity 0
            w(E.VECT_12, 0b100000000101),  # x = 100, 102, 111; base -> 112
            w(E.VECT_8, 0b10000001),  # x = 112, 119; base -> 120
            w(E.ADDR_X, (1 << 11) | 5),  # own x and polarity, base unchanged
            w(E.VECT_8, 0b1),  # x = 120, polarity still 0
        )
    )
    t = 1000
    assert tuples(ev) == [
        (t, 100, 2, 0),
        (t, 102, 2, 0),
        (t, 111, 2, 0),
        (t, 112, 2, 0),
        (t, 119, 2, 0),
        (t, 5, 2, 1),
        (t, 120, 2, 0),
    ]


def test_evt3_clock_wrap_and_jitter() -> None:
    dec = Decoder("evt3", W, H)
    ev = dec.decode(
        words(
            w(E.TIME_HIGH, 4095),
            w(E.TIME_LOW, 4095),
            w(E.ADDR_Y, 0),
            w(E.ADDR_X, 1),
            w(E.TIME_HIGH, 0),  # back by 4095 > margin: wrap
            w(E.TIME_LOW, 0),
            w(E.ADDR_X, 2),
            w(E.TIME_HIGH, 100),
            w(E.TIME_HIGH, 95),  # back by 5 <= margin: jitter, not a wrap
            w(E.ADDR_X, 3),
        )
    )
    assert [int(t) for t in ev["t"]] == [
        ((1 << 24) - 1) * 1000,
        (1 << 24) * 1000,
        ((1 << 24) + (95 << 12)) * 1000,
    ]
    assert dec.stats.time_wraps == 1


def test_evt3_unknown_code_9_counted_and_skipped() -> None:
    dec = Decoder("evt3", W, H)
    ev = dec.decode(
        words(
            w(E.TIME_HIGH, 0),
            w(9, 0x123),
            w(E.ADDR_Y, 1),
            w(9, 0xFFF),
            w(E.ADDR_X, 7),
            w(E.OTHERS, 1),
            w(E.CONTINUED_12, 3),
        )
    )
    assert tuples(ev) == [(0, 7, 1, 0)]
    assert dec.stats.unknown_words == 2
    assert dec.stats.unknown_codes == {9: 2}


def test_evt3_state_carries_across_packets() -> None:
    stream = words(
        w(E.TIME_HIGH, 3),
        w(E.TIME_LOW, 9),
        w(E.ADDR_Y, 4),
        w(E.VECT_BASE_X, (1 << 11) | 20),
        w(E.VECT_12, 0b11),
        w(E.VECT_8, 0b1),
    )
    whole = Decoder("evt3", W, H).decode(stream)
    dec = Decoder("evt3", W, H)
    parts = [dec.decode(stream[i : i + 2]) for i in range(0, len(stream), 2)]
    assert tuples(np.concatenate(parts)) == tuples(whole)
    assert tuples(whole)[-1] == ((((3 << 12) | 9) * 1000), 32, 4, 1)


def test_evt3_out_of_range_dropped_and_counted() -> None:
    dec = Decoder("evt3", 10, 10)
    ev = dec.decode(
        words(
            w(E.TIME_HIGH, 0),
            w(E.ADDR_Y, 3),
            w(E.ADDR_X, 9),
            w(E.ADDR_X, 10),
            w(E.VECT_BASE_X, 8),
            w(E.VECT_8, 0b111),
            w(E.ADDR_Y, 12),
            w(E.ADDR_X, 1),
        )
    )
    assert tuples(ev) == [(0, 9, 3, 0), (0, 8, 3, 0), (0, 9, 3, 0)]
    assert dec.stats.dropped_out_of_range == 3


def test_evt3_external_trigger() -> None:
    dec = Decoder("evt3", W, H)
    ev = dec.decode(words(w(E.TIME_HIGH, 0), w(E.TIME_LOW, 42), w(E.EXT_TRIGGER, (3 << 8) | 1)))
    assert ev.size == 0
    trig = dec.last_triggers
    assert [(int(t["t"]), int(t["id"]), int(t["p"])) for t in trig] == [(42_000, 3, 1)]
    assert dec.stats.triggers == 1


def test_evt3_many_triggers_and_dense_vectors_resume() -> None:
    trig_words = [w(E.EXT_TRIGGER, ((i % 16) << 8) | (i & 1)) for i in range(300)]
    vect_words = [w(E.VECT_BASE_X, 0)] + [w(E.VECT_12, 0xFFF)] * 40  # 12 events per word
    dec = Decoder("evt3", 1024, 4)
    ev = dec.decode(words(w(E.TIME_HIGH, 0), *trig_words, *vect_words, *trig_words))
    assert ev.size == 480 and np.array_equal(ev["x"], np.arange(480))
    trig = dec.last_triggers
    assert trig.size == 600
    assert np.array_equal(trig["id"], np.tile(np.arange(300) % 16, 2))
    assert np.array_equal(trig["p"], np.tile(np.arange(300) & 1, 2))
    # more events than the first output allocation holds (2 per word): decoding resumes
    dense = Decoder("evt3", 2048, 4).decode(
        words(w(E.TIME_HIGH, 0), w(E.VECT_BASE_X, 0), *[w(E.VECT_12, 0xFFF)] * 150)
    )
    assert np.array_equal(dense["x"], np.arange(1800)) and dense.dtype == EVENT_DTYPE
    assert trig.dtype == dec.last_triggers.dtype


def test_evt3_odd_length_payload_counts_trailing_byte() -> None:
    dec = Decoder("evt3", W, H)
    ev = dec.decode(words(w(E.TIME_HIGH, 0), w(E.ADDR_X, 1)) + b"\x01")
    assert ev.size == 1 and dec.stats.truncated_bytes == 1


# ----------------------------------------------------------------------------- other formats


def test_mono_known_answer() -> None:
    word = (1 << 63) | (7 << 48) | (300 << 32) | 12345
    ev = Decoder("mono", W, H).decode(np.array([word], dtype="<u8").tobytes(), time_base=10**9)
    assert tuples(ev) == [(10**9 + 12345, 300, 7, 1)]


def test_trigger_known_answer() -> None:
    dec = Decoder("trigger", W, H)
    word = (0 << 63) | (2 << 48) | 99
    assert dec.decode(np.array([word], dtype="<u8").tobytes(), time_base=5).size == 0
    assert [(int(t["t"]), int(t["id"]), int(t["p"])) for t in dec.last_triggers] == [(104, 2, 0)]


def test_libcaer_known_answer_with_rollover() -> None:
    rec = np.zeros(3, dtype=[("data", "<u4"), ("ts", "<i4")])
    rec["data"] = [(5 << 17) | (6 << 2) | (1 << 1), (7 << 17) | (8 << 2), (1 << 17) | (1 << 2)]
    rec["ts"] = [(1 << 31) - 100, (1 << 31) - 1, 3]  # the third one rolled over
    dec = Decoder("libcaer", W, H)
    ev = dec.decode(rec.tobytes(), time_base=1000)
    assert tuples(ev) == [
        (1000 + ((1 << 31) - 100) * 1000, 5, 6, 1),
        (1000 + ((1 << 31) - 1) * 1000, 7, 8, 0),
        (1000 + ((1 << 31) + 3) * 1000, 1, 1, 0),
    ]
    assert dec.stats.time_wraps == 1
    rec["ts"] = [100, 90, 5000]  # a record 10 us out of order is not a rollover (35.8 min)
    ev = Decoder("libcaer", W, H).decode(rec.tobytes(), time_base=0)
    assert ev["t"].tolist() == [100_000, 90_000, 5_000_000]
    rec4 = np.zeros(4, dtype=rec.dtype)  # out of order across the wrap: one rollover
    rec4["ts"] = [(1 << 31) - 10, 5, (1 << 31) - 3, 8]
    dec = Decoder("libcaer", W, H)
    ev = dec.decode(rec4.tobytes(), time_base=0)
    us = [(1 << 31) - 10, (1 << 31) + 5, (1 << 31) - 3, (1 << 31) + 8]
    assert ev["t"].tolist() == [u * 1000 for u in us] and dec.stats.time_wraps == 1


def test_libcaer_cmp_known_answer() -> None:
    dec = Decoder("libcaer_cmp", W, H)
    pkt = words(
        w(0, 1),  # TIME_HIGH
        w(1, 2),  # TIME_LOW
        w(2, 7),  # ADDR_X
        w(3, (1 << 11) | 3),  # ADDR_Y, polarity 1: emits
        w(4, 10),  # VECT_BASE_Y 10, polarity 0
        w(5, 0b11),  # VECT_8: y = 10, 11
        w(11, 0),  # unknown
    )
    ev = dec.decode(pkt, time_base=500)
    t = 500 + ((1 << 12) | 2) * 1000
    assert tuples(ev) == [(t, 7, 3, 1), (t, 7, 10, 0), (t, 7, 11, 0)]
    assert dec.stats.unknown_words == 1
    # time restarts with each packet; x and base y carry over
    ev2 = dec.decode(words(w(3, 4), w(5, 0b1)), time_base=900)
    assert tuples(ev2) == [(900, 7, 4, 0), (900, 7, 18, 0)]


# ----------------------------------------------------------------------------- errors


def test_unsupported_encoding_names_it() -> None:
    with pytest.raises(DecodeError, match="bogus"):
        Decoder("bogus", W, H)
    with pytest.raises(DecodeError, match="bogus"):
        encode(make_events([0], [0], [0], [0]), "bogus", W, H)


@pytest.mark.parametrize("encoding", DECODE_ENCODINGS)
def test_big_endian_refused(encoding: str) -> None:
    with pytest.raises(DecodeError, match=encoding):
        Decoder(encoding, W, H).decode(b"\x00" * 16, is_bigendian=True)


def test_non_bytes_payload_refused() -> None:
    with pytest.raises(DecodeError, match="evt3"):
        Decoder("evt3", W, H).decode(np.zeros(4, dtype=np.float32))
    with pytest.raises(DecodeError, match="evt3"):
        Decoder("evt3", W, H).decode(12)
    with pytest.raises(DecodeError, match="'H'"):
        Decoder("evt3", W, H).decode(array.array("H", [1, 2]))


@pytest.mark.parametrize("encoding", DECODE_ENCODINGS)
def test_rclpy_array_payload_decodes_like_bytes(encoding: str) -> None:
    # rclpy hands uint8[] fields (EventPacket.events) over as array.array("B")
    rng = np.random.default_rng(7)
    ev = make_events(np.arange(50) * 1000, rng.integers(0, W, 50), rng.integers(0, H, 50), 1)
    if encoding in ("evt3", "mono"):
        payload = encode(ev, encoding, W, H)
    else:
        payload = rng.integers(0, 256, 8 * 50 + 3, dtype=np.uint8).tobytes()
    ref, dec = Decoder(encoding, W, H), Decoder(encoding, W, H)
    want = ref.decode(payload, time_base=10**9)
    got = dec.decode(array.array("B", payload), time_base=10**9)
    assert np.array_equal(got, want) and dec.stats == ref.stats
    assert dec.decode(array.array("B")).size == 0


def test_encode_rejects_out_of_sensor_and_bad_mono_offsets() -> None:
    ev = make_events([0], [W], [0], [1])
    with pytest.raises(ValueError, match="outside"):
        encode(ev, "evt3", W, H)
    with pytest.raises(ValueError, match="time_base"):
        encode(make_events([1 << 33], [0], [0], [1]), "mono", W, H, time_base=0)


def test_decode_packet_checks_message_fields() -> None:
    class Msg:
        encoding, width, height, time_base, is_bigendian = "evt3", W, H, 0, False
        events = np.frombuffer(words(w(E.TIME_HIGH, 0), w(E.ADDR_X, 1)), dtype=np.uint8)

    assert Decoder("evt3", W, H).decode_packet(Msg).size == 1
    with pytest.raises(DecodeError, match="does not match"):
        Decoder("evt3", W + 1, H).decode_packet(Msg)
    with pytest.raises(DecodeError, match="does not match"):
        Decoder("mono", W, H).decode_packet(Msg)


# ----------------------------------------------------------------------------- properties


@st.composite
def event_arrays(draw: st.DrawFn, max_t_us: int, width: int = W, height: int = H) -> np.ndarray:
    n = draw(st.integers(0, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    dense = draw(st.booleans())
    rng = np.random.default_rng(seed)
    t_us = np.sort(rng.integers(0, max_t_us if not dense else max(2, n // 8), n))
    x = rng.integers(0, width if not dense else 40, n)
    y = rng.integers(0, height if not dense else 3, n)
    p = rng.integers(0, 2, n)
    return make_events(t_us * 1000, x, y, p)


def canonical(ev: np.ndarray) -> np.ndarray:
    return ev[np.lexsort((ev["x"], ev["p"], ev["y"], ev["t"]))]


@settings(max_examples=60, deadline=None)
@given(event_arrays(max_t_us=5 * (1 << 24)))
def test_evt3_round_trip(ev: np.ndarray) -> None:
    payload = encode(ev, "evt3", W, H)
    dec = Decoder("evt3", W, H)
    out = dec.decode(payload)
    assert dec.stats.unknown_words == 0 and dec.stats.dropped_out_of_range == 0
    assert np.all(np.diff(out["t"]) >= 0)
    # EVT 3.0 carries a relative 24-bit clock: the decoder starts in the first clock period.
    expected = ev.copy()
    if ev.size:
        t0_us = int(ev["t"].min()) // 1000
        expected["t"] -= (t0_us - t0_us % E.CLOCK_PERIOD_US) * 1000
    assert np.array_equal(canonical(out), canonical(expected))


@settings(max_examples=40, deadline=None)
@given(event_arrays(max_t_us=3 * (1 << 24)), st.integers(1, 300), st.integers(1, 6))
def test_capped_packet_keeps_the_newest_events(ev: np.ndarray, keep: int, chunk_words: int) -> None:
    import facealign_ros.events.codec as codec

    payload = encode(ev, "evt3", W, H)
    whole = Decoder("evt3", W, H).decode(payload)
    old = codec.CHUNK_BYTES
    codec.CHUNK_BYTES = 2 * chunk_words  # many slices, cut anywhere in the stream
    try:
        dec = Decoder("evt3", W, H)
        got = dec.decode(payload, max_events=keep)
    finally:
        codec.CHUNK_BYTES = old
    assert np.array_equal(got, whole[-keep:] if whole.size else whole)
    assert dec.stats.dropped_overflow == max(0, whole.size - keep)
    assert dec.stats.events == got.size and got.flags.writeable


def test_capped_packet_bounds_other_encodings_and_refuses_zero() -> None:
    ev = make_events(np.arange(50) * 1000, np.arange(50) % W, np.arange(50) % H, np.ones(50))
    dec = Decoder("mono", W, H)
    got = dec.decode(encode(ev, "mono", W, H), max_events=20)
    assert np.array_equal(got, ev[-20:]) and dec.stats.dropped_overflow == 30
    with pytest.raises(ValueError, match="max_events"):
        dec.decode(b"", max_events=0)


@settings(max_examples=30, deadline=None)
@given(event_arrays(max_t_us=3 * (1 << 24)), st.integers(1, 40))
def test_evt3_split_packets_equal_one_shot(ev: np.ndarray, n_parts: int) -> None:
    payload = encode(ev, "evt3", W, H)
    whole = Decoder("evt3", W, H).decode(payload)
    n_words = len(payload) // 2
    cuts = np.linspace(0, n_words, n_parts + 1).astype(int) * 2
    dec = Decoder("evt3", W, H)
    parts = [dec.decode(payload[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    got = np.concatenate(parts) if parts else whole[:0]
    assert np.array_equal(got, whole)


@settings(max_examples=60, deadline=None)
@given(event_arrays(max_t_us=4_000_000), st.integers(0, 10**12))
def test_mono_round_trip(ev: np.ndarray, time_base: int) -> None:
    ev = ev.copy()
    ev["t"] += time_base
    out = Decoder("mono", W, H).decode(encode(ev, "mono", W, H, time_base), time_base=time_base)
    assert np.array_equal(out, ev)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(DECODE_ENCODINGS), st.binary(max_size=4096), st.integers(0, 2**40))
def test_fuzz_random_bytes_never_crash(encoding: str, payload: bytes, time_base: int) -> None:
    dec = Decoder(encoding, 64, 48)
    ev = dec.decode(payload, time_base=time_base)
    assert ev.dtype == EVENT_DTYPE
    assert ev.size <= 12 * len(payload)
    assert np.all(ev["x"] < 64) and np.all(ev["y"] < 48) and np.all(ev["p"] <= 1)
    assert dec.stats.events == ev.size


@settings(max_examples=40, deadline=None)
@given(event_arrays(max_t_us=2 * (1 << 24)), st.integers(0, 10_000), st.integers(0, 10_000))
def test_truncated_evt3_stream_decodes_a_prefix(ev: np.ndarray, cut: int, junk: int) -> None:
    payload = encode(ev, "evt3", W, H)
    cut = min(cut, len(payload))
    dec = Decoder("evt3", W, H)
    part = dec.decode(payload[:cut] + bytes([junk % 256]) * (junk % 3))
    full = Decoder("evt3", W, H).decode(payload)
    assert part.size <= full.size + 12
    prefix = part[: max(0, part.size - 12)]
    assert np.array_equal(prefix, full[: prefix.size])


# ----------------------------------------------------------------------------- evt3 decoding loops


def decode_with(loop: str, payload: bytes, n_parts: int = 1, size: tuple = (W, H)) -> tuple:
    """Decode in ``n_parts`` packets with the burst or word loop forced (or ``auto``)."""
    dec = Decoder("evt3", *size)
    if loop != "auto":
        E.force_loop(dec._ctx, loop == "bursts")
    cuts = np.linspace(0, len(payload) // 2, n_parts + 1).astype(int) * 2
    ev, trig = [], []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        ev.append(dec.decode(payload[a:b]))
        trig.append(dec.last_triggers)
    return concat_events(ev), concat_structured(trig, TRIGGER_DTYPE), dec.stats


def random_words(seed: int, n: int, rare: bool) -> bytes:
    """Random EVT 3.0 words, mostly of the codes that bursts are made of."""
    rng = np.random.default_rng(seed)
    codes = [E.ADDR_Y, E.ADDR_X, E.VECT_BASE_X, E.VECT_12, E.VECT_8, E.TIME_LOW]
    codes += [E.TIME_HIGH, E.EXT_TRIGGER, 1, 7, 9, 11, 12, 13, 14, 15] if rare else []
    ws = (rng.choice(codes, n) << 12) | rng.integers(0, 4096, n)
    return words(w(E.TIME_HIGH, 0), *ws.tolist())


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 800),
    st.booleans(),
    st.integers(1, 5),
    st.sampled_from([(W, H), (100, 60), (2048, 2048)]),
)
def test_evt3_burst_and_word_loops_agree(
    seed: int, n: int, rare: bool, n_parts: int, size: tuple
) -> None:
    payload = random_words(seed, n, rare)
    ev, trig, stats = decode_with("words", payload, 1, size)
    ev2, trig2, stats2 = decode_with("bursts", payload, n_parts, size)
    assert np.array_equal(ev2, ev) and np.array_equal(trig2, trig)
    assert stats2.dropped_out_of_range == stats.dropped_out_of_range
    assert (stats2.unknown_codes, stats2.time_wraps) == (stats.unknown_codes, stats.time_wraps)


@settings(max_examples=30, deadline=None)
@given(event_arrays(max_t_us=2 * (1 << 24)), st.integers(1, 7))
def test_evt3_burst_loop_decodes_encoder_output(ev: np.ndarray, n_parts: int) -> None:
    payload = encode(ev, "evt3", W, H)
    whole = Decoder("evt3", W, H).decode(payload)
    assert np.array_equal(decode_with("bursts", payload, n_parts)[0], whole)


def test_evt3_loop_choice_follows_the_stream() -> None:
    rng = np.random.default_rng(0)
    single = [w(E.ADDR_Y, 5), w(E.ADDR_X, 7)]
    vector = [w(E.TIME_LOW, 1), w(E.ADDR_Y, 5), w(E.VECT_BASE_X, 20), w(E.VECT_8, 0b101)]
    mixed = [x for c in rng.random(3000) < 0.4 for x in (single if c else vector)]
    runs = [x for c in rng.random(3000) < 0.4 for x in (single if c else vector + vector[-1:])]
    for body, bursts in ((mixed, 1), (single * 3000, 0), (vector * 3000, 0), (runs, 0)):
        payload = words(w(E.TIME_HIGH, 0), *body, *mixed)  # ends in a mixed segment
        dec = Decoder("evt3", W, H)
        dec.decode(payload[: 2 * 4100])
        assert dec._ctx[E.L_BURSTS] == bursts
        ev, _, stats = decode_with("auto", payload, 9)
        assert np.array_equal(ev, decode_with("words", payload)[0])
        assert stats.events == sum(
            1 if x >> 12 == E.ADDR_X else 2 if x >> 12 == E.VECT_8 else 0 for x in body + mixed
        )


def test_evt3_burst_loop_resumes_when_out_is_full() -> None:
    payload = words(w(E.TIME_HIGH, 0), w(E.VECT_BASE_X, 0), *[w(E.VECT_12, 0xFFF)] * 150)
    for loop in ("bursts", "words"):
        ev, _, stats = decode_with(loop, payload, size=(2048, 4))
        assert np.array_equal(ev["x"], np.arange(1800)) and stats.dropped_out_of_range == 0


@pytest.mark.parametrize("encoding", ["evt3", "mono", "libcaer", "libcaer_cmp"])
def test_decoded_events_are_the_callers_own(encoding: str) -> None:
    rng = np.random.default_rng(4)
    t = np.sort(rng.integers(0, 10**6, 200)) * 1000
    ev = make_events(t, rng.integers(0, W, 200), rng.integers(0, H, 200), rng.integers(0, 2, 200))
    if encoding in ("evt3", "mono"):
        payload = np.frombuffer(encode(ev, encoding, W, H), np.uint8).copy()
    else:  # any bytes: what matters is that nothing aliases them
        payload = np.random.default_rng(0).integers(0, 256, 8 * 64, dtype=np.uint8)
    dec = Decoder(encoding, W, H)
    first = dec.decode(payload)
    assert first.flags.writeable and not np.may_share_memory(first, payload)
    kept = first.copy()
    dec.decode(payload)  # a second call must not touch the first result
    assert np.array_equal(first, kept)
