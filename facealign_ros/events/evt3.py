"""Prophesee EVT 3.0 decoder and encoder kernels (numba).

Words are little-endian 16-bit with the type code in the top 4 bits:

====  ===========  ==========================================================
code  name         payload
====  ===========  ==========================================================
0     ADDR_Y       y in bits 0-10 (bit 11: system type, ignored)
2     ADDR_X       x in bits 0-10, polarity in bit 11; emits one event at (x, y, t)
3     VECT_BASE_X  x in bits 0-10, polarity in bit 11; sets the vector base
4     VECT_12      12 valid bits; bit i emits at base_x + i, then base_x += 12
5     VECT_8       8 valid bits; bit i emits at base_x + i, then base_x += 8
6     TIME_LOW     low 12 bits of the 24-bit microsecond clock
8     TIME_HIGH    high 12 bits of the 24-bit microsecond clock
10    EXT_TRIGGER  edge in bit 0, trigger id in bits 8-11
7,14,15            CONTINUED_4, OTHERS, CONTINUED_12: skipped silently
else               unknown: counted per code and skipped
====  ===========  ==========================================================

The 24-bit clock wraps every 2**24 us (16.77 s). A TIME_HIGH that goes back by more than
:data:`WRAP_MARGIN` high units is a wrap; smaller steps back are jitter and not a wrap.
Words before the first TIME_HIGH are skipped. Decoder state (time, y, vector base and polarity,
wrap count) is kept in a small int64 array so that it carries across packets.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from facealign_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE, concat_structured

ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8 = 0, 2, 3, 4, 5
TIME_LOW, CONTINUED_4, TIME_HIGH, EXT_TRIGGER = 6, 7, 8, 10
OTHERS, CONTINUED_12 = 14, 15

WRAP_MARGIN = 10
"""A TIME_HIGH going back by more than this many high units (x 4.096 ms) is a clock wrap."""

CLOCK_PERIOD_US = 1 << 24
"""Period of the EVT 3.0 timestamp clock in microseconds."""

# The decoder context: one int64 array (few kernel arguments keep the per-packet call cheap).
# [0, 6) stream state, [6, 10) counters, [10, 26) unknown-code counts, 26 width, 27 height.
S_HAS_TIME, S_TIME_HIGH, S_TIME_LOW, S_Y, S_BASE_X, S_VPOL = 0, 1, 2, 3, 4, 5
STATE_SIZE = 6
C_DROPPED, C_SKIPPED, C_UNKNOWN, C_WRAPS = 6, 7, 8, 9
COUNTERS = slice(6, 10)
UNKNOWN = slice(10, 26)
U_BASE, W_IDX, H_IDX = 10, 26, 27
CTX_SIZE = 28

_TRIGGER_CHUNK = 64


def new_context(width: int, height: int) -> np.ndarray:
    """A fresh decoder context for a ``width`` x ``height`` sensor (no time seen yet)."""
    ctx = np.zeros(CTX_SIZE, dtype=np.int64)
    ctx[W_IDX], ctx[H_IDX] = width, height
    return ctx


def reset_state(ctx: np.ndarray) -> None:
    """Forget the stream state (time, wraps, y, vector base); counters are kept."""
    ctx[:STATE_SIZE] = 0


@nb.njit(cache=True, nogil=True)
def _decode_kernel(words, start, ctx, out, trig):
    """Decode ``words[start:]`` into ``out`` (int64 pairs) and ``trig``.

    Stops before a word that could overflow ``out`` or ``trig``; returns
    ``(next_word, n_events, n_triggers)`` with the state saved, so the caller can resume.
    Event writes are branch-free (write, then advance by the validity bit): the slot after the
    last event may hold scratch data, hence the spare room of 12 events in ``out``.
    """
    state = ctx
    counters = ctx
    width = ctx[W_IDX]
    height = ctx[H_IDX]
    # Slot index j = 2 * n is unsigned so that numba emits no negative-index wraparound.
    u1 = np.uint64(1)
    u2 = np.uint64(2)
    cap = np.uint64(out.shape[0] - 26)
    cap_trig = trig.shape[0]
    n_words = words.shape[0]
    i = start
    if not state[S_HAS_TIME]:
        while i < n_words and (np.int64(words[i]) >> 12) != TIME_HIGH:
            i += 1
        counters[C_SKIPPED] += i - start
        if i == n_words:
            return i, 0, 0
        state[S_HAS_TIME] = 1
        state[S_TIME_HIGH] = (np.int64(words[i]) & 0xFFF) << 12
        i += 1
    time_high = state[S_TIME_HIGH]  # (wraps << 24) | (high << 12), microseconds
    time_low = state[S_TIME_LOW]
    t_ns = (time_high | time_low) * 1000
    y = state[S_Y]
    y_ok = np.int64(y < height)
    base_x = state[S_BASE_X]
    vpol = state[S_VPOL]
    j = np.uint64(0)
    nt = 0
    dropped = 0
    full = False
    while i < n_words and not full and j <= cap:
        # every word emits at most 12 events (24 slots): no capacity check inside a block
        end = min(n_words, i + max(np.int64((cap - j) // np.uint64(24)), 1))
        while i < end:
            w = np.int64(words[i])
            code = w >> 12
            i += 1
            if code == ADDR_Y:
                y = w & 0x7FF
                y_ok = np.int64(y < height)
            elif code == ADDR_X:
                x = w & 0x7FF
                ok = np.int64(x < width) & y_ok
                out[j] = t_ns
                out[j + u1] = x | (y << 16) | (((w >> 11) & 1) << 32)
                j += u2 * np.uint64(ok)
                dropped += 1 - ok
            elif code == VECT_8 or code == VECT_12:
                nbits = 12 if code == VECT_12 else 8
                yp = (y << 16) | (vpol << 32)
                if y_ok and base_x + nbits <= width:
                    xyp = yp | base_x
                    for b in range(8):
                        out[j] = t_ns
                        out[j + u1] = xyp + b
                        j += u2 * np.uint64((w >> b) & 1)
                    if nbits == 12:
                        for b in range(8, 12):
                            out[j] = t_ns
                            out[j + u1] = xyp + b
                            j += u2 * np.uint64((w >> b) & 1)
                else:
                    for b in range(nbits):
                        if (w >> b) & 1:
                            x = base_x + b
                            if x < width and y_ok:
                                out[j] = t_ns
                                out[j + u1] = x | yp
                                j += u2
                            else:
                                dropped += 1
                base_x += nbits
            elif code == VECT_BASE_X:
                base_x = w & 0x7FF
                vpol = (w >> 11) & 1
            elif code == TIME_LOW:
                time_low = w & 0xFFF
                t_ns = (time_high | time_low) * 1000
            elif code == TIME_HIGH:
                h = w & 0xFFF
                last_h = (time_high >> 12) & 0xFFF
                wraps = time_high >> 24
                if h < last_h and last_h - h > WRAP_MARGIN:
                    wraps += 1
                    counters[C_WRAPS] += 1
                time_high = (wraps << 24) | (h << 12)
                t_ns = (time_high | time_low) * 1000
            elif code == EXT_TRIGGER:
                if nt == cap_trig:  # no room: give the word back and stop
                    i -= 1
                    full = True
                    break
                r = trig[nt]
                r.t = t_ns
                r.id = (w >> 8) & 0xF
                r.p = w & 1
                nt += 1
            elif code == CONTINUED_4 or code == OTHERS or code == CONTINUED_12:
                pass
            else:
                counters[C_UNKNOWN] += 1
                ctx[U_BASE + code] += 1
    counters[C_DROPPED] += dropped
    state[S_TIME_HIGH] = time_high
    state[S_TIME_LOW] = time_low
    state[S_Y] = y
    state[S_BASE_X] = base_x
    state[S_VPOL] = vpol
    return i, np.int64(j) // 2, nt


def decode_evt3(words: np.ndarray, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode EVT 3.0 words, updating the context ``ctx`` in place.

    Args:
        words: uint16 words, shape ``(N,)``, native (little-endian) order.
        ctx: decoder context from :func:`new_context`, carried across packets (stream state,
            counters of dropped/skipped/unknown words and wraps, sensor size; events with
            x >= width or y >= height are dropped).

    Returns:
        ``(events, triggers)``: :data:`EVENT_DTYPE` and :data:`TRIGGER_DTYPE` arrays in stream
        order, times in ns of the sensor clock (wraps unrolled).
    """
    # Events are written as int64 pairs (t, x | y << 16 | p << 32): the EVENT_DTYPE layout.
    # Most streams carry one or two events per word; vector-dense ones resume in new chunks.
    # Untouched pages of an allocation are never made resident, so the spare room is cheap.
    cap = 2 * words.shape[0] + 64
    out = np.empty(2 * cap, dtype=np.int64)
    trig = np.empty(_TRIGGER_CHUNK, dtype=TRIGGER_DTYPE)
    start, n, nt = _decode_kernel(words, 0, ctx, out, trig)
    if start >= words.shape[0]:  # the common case: one pass
        return np.frombuffer(out, EVENT_DTYPE, count=n), trig[:nt]
    chunks, trig_chunks = [np.frombuffer(out, EVENT_DTYPE, count=n)], [trig[:nt]]
    while start < words.shape[0]:
        cap = 12 * (words.shape[0] - start) + 64 if nt < trig.shape[0] else cap
        out = np.empty(2 * cap, dtype=np.int64)
        trig = np.empty(_TRIGGER_CHUNK, dtype=TRIGGER_DTYPE)
        start, n, nt = _decode_kernel(words, start, ctx, out, trig)
        chunks.append(np.frombuffer(out, EVENT_DTYPE, count=n))
        trig_chunks.append(trig[:nt])
    return concat_structured(chunks, EVENT_DTYPE), concat_structured(trig_chunks, TRIGGER_DTYPE)


@nb.njit(cache=True, nogil=True)
def _encode_kernel(t_us, x, y, p, out):
    """Encode sorted events (t in us) into EVT 3.0 words; returns the word count."""
    m = 0
    cur_high = np.int64(-1)  # absolute (unwrapped) high time: t_us >> 12
    cur_low = np.int64(-1)
    cur_y = np.int64(-1)
    n = t_us.shape[0]
    i = 0
    while i < n:
        ti = t_us[i]
        hi = ti >> 12
        if hi != cur_high:
            if cur_high >= 0:
                # step through long gaps so the decoder sees every wrap
                while hi - cur_high > 2048:
                    cur_high += 2048
                    out[m] = (TIME_HIGH << 12) | (cur_high & 0xFFF)
                    m += 1
            out[m] = (TIME_HIGH << 12) | (hi & 0xFFF)
            m += 1
            cur_high = hi
            cur_low = -1
        lo = ti & 0xFFF
        if lo != cur_low:
            out[m] = (TIME_LOW << 12) | lo
            m += 1
            cur_low = lo
        yi = np.int64(y[i])
        if yi != cur_y:
            out[m] = (ADDR_Y << 12) | yi
            m += 1
            cur_y = yi
        pi = np.int64(p[i])
        # run of events sharing (t, y, p) with strictly increasing x
        j = i + 1
        while j < n and t_us[j] == ti and y[j] == y[i] and p[j] == p[i] and x[j] > x[j - 1]:
            j += 1
        k = i
        while k < j:
            x0 = np.int64(x[k])
            # events of this run inside [x0, x0 + 12)
            e = k + 1
            while e < j and np.int64(x[e]) < x0 + 12:
                e += 1
            if e - k == 1:
                out[m] = (ADDR_X << 12) | (pi << 11) | x0
                m += 1
                k = e
                continue
            out[m] = (VECT_BASE_X << 12) | (pi << 11) | x0
            m += 1
            base = x0
            while k < j and np.int64(x[k]) < base + 12:
                span = np.int64(x[j - 1]) - base
                nbits = 8 if span < 8 else 12
                mask = np.int64(0)
                while k < j and np.int64(x[k]) < base + nbits:
                    mask |= np.int64(1) << (np.int64(x[k]) - base)
                    k += 1
                code = VECT_8 if nbits == 8 else VECT_12
                out[m] = (code << 12) | mask
                m += 1
                base += nbits
        i = j
    return m


def encode_evt3(events: np.ndarray, width: int, height: int) -> bytes:
    """Encode events as an EVT 3.0 payload, using vector words where they fit.

    Args:
        events: :data:`EVENT_DTYPE` array. Times are truncated to microseconds and taken modulo
            the 24-bit clock period at the first event (EVT 3.0 carries a relative clock).
            Unsorted input is stably sorted by time first.
        width: sensor width; every x must be < width (and < 2048).
        height: sensor height; every y must be < height (and < 2048).

    Returns:
        The payload bytes (little-endian 16-bit words). Decoding it yields the events in
        canonical order: by time, then runs of equal (t, y, p) with x ascending.

    Raises:
        ValueError: if coordinates are out of range or times are negative.
    """
    ev = np.asarray(events)
    if ev.dtype != EVENT_DTYPE:
        raise ValueError(f"encode(evt3): expected EVENT_DTYPE events, got dtype {ev.dtype}")
    if not (0 < width <= 2048 and 0 < height <= 2048):
        raise ValueError(
            f"encode(evt3): sensor {width}x{height} exceeds the 2048x2048 EVT 3.0 limit"
        )
    if ev.size == 0:
        return b""
    if int(ev["x"].max()) >= width or int(ev["y"].max()) >= height:
        raise ValueError(f"encode(evt3): events outside the {width}x{height} sensor")
    if int(ev["t"].min()) < 0:
        raise ValueError("encode(evt3): negative timestamps")
    t_us = ev["t"] // 1000
    if np.any(np.diff(t_us) < 0):
        order = np.argsort(t_us, kind="stable")
        ev, t_us = ev[order], t_us[order]
    t_us = t_us - (t_us[0] - t_us[0] % CLOCK_PERIOD_US)
    x = np.ascontiguousarray(ev["x"])
    y = np.ascontiguousarray(ev["y"])
    p = (ev["p"] != 0).astype(np.uint8)
    span_high = int((t_us[-1] >> 12) - (t_us[0] >> 12))
    out = np.empty(4 * ev.size + 2 + span_high // 2048 + 1, dtype="<u2")
    m = _encode_kernel(np.ascontiguousarray(t_us), x, y, p, out)
    return out[:m].tobytes()
