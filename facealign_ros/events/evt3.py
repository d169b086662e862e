"""Prophesee EVT 3.0 decoder kernels (numba); the encoder is in :mod:`.evt3_encode`.

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
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from facealign_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE, concat_structured

ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8 = 0, 2, 3, 4, 5
TIME_LOW, CONTINUED_4, TIME_HIGH, EXT_TRIGGER = 6, 7, 8, 10
OTHERS, CONTINUED_12 = 14, 15

WRAP_MARGIN = 10
"""A TIME_HIGH going back by more than this many high units (x 4.096 ms) is a clock wrap."""

CLOCK_PERIOD_US = 1 << 24
"""Period of the EVT 3.0 timestamp clock in microseconds."""

# The decoder context: one int64 array (few kernel arguments keep the per-packet call cheap).
# [0, 6) stream state, [6, 10) counters, [10, 26) unknown-code counts, 26 width, 27 height,
# [28, 31) loop choice: burst loop on/off, ADDR_X, VECT_BASE_X and vector words seen in the
# current segment (counts in bits 0-12, 13-25, 26-), words left in it (see _decode_kernel).
S_HAS_TIME, S_TIME_HIGH, S_TIME_LOW, S_Y, S_BASE_X, S_VPOL = 0, 1, 2, 3, 4, 5
STATE_SIZE = 6
C_DROPPED, C_SKIPPED, C_UNKNOWN, C_WRAPS = 6, 7, 8, 9
COUNTERS = slice(6, 10)
UNKNOWN = slice(10, 26)
U_BASE, W_IDX, H_IDX = 10, 26, 27
L_BURSTS, L_COUNTS, L_LEFT = 28, 29, 30
CTX_SIZE = 31
SEGMENT = 4096
"""Words between two choices of the decoding loop."""

_TRIGGER_CHUNK = 64
_NO_TRIGGERS = np.empty(0, dtype=TRIGGER_DTYPE)
_NO_TRIGGERS.flags.writeable = False


def new_context(width: int, height: int) -> np.ndarray:
    """A fresh decoder context for a ``width`` x ``height`` sensor (no time seen yet)."""
    ctx = np.zeros(CTX_SIZE, dtype=np.int64)
    ctx[W_IDX], ctx[H_IDX] = width, height
    return ctx


def reset_state(ctx: np.ndarray) -> None:
    """Forget the stream state (time, wraps, y, vector base); counters are kept."""
    ctx[:STATE_SIZE] = 0


def force_loop(ctx: np.ndarray, bursts: bool) -> None:
    """Decode with the burst loop (True) or the word loop (False) only (for tests)."""
    ctx[L_BURSTS], ctx[L_LEFT] = bursts, 1 << 62


# ----------------------------------------------------------------------------- kernel helpers


_I8, _I32, _I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)


def _ptr(context, builder, ty, array, index, pointee):
    """``&array[index]`` of a numba array argument, as a pointer to ``pointee``."""
    data = context.make_array(ty)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), pointee.as_pointer())


def _records_store(n: int):
    """Intrinsic ``store(out, j, t, xyp, table, row)`` of ``n`` event records in one vector.

    Writes ``(t, xyp + table[row, 2k + 1])`` at ``out[j + 2k : j + 2k + 2]`` for k < n;
    ``table`` is uint8 with 16 lanes a row, its even lanes 0.
    """
    vec = ir.VectorType(_I64, 2 * n)

    @intrinsic
    def store(typingctx, out, j, t, xyp, table, row):
        def codegen(context, builder, sig, args):
            lanes = ir.VectorType(_I8, 2 * n)
            row_start = builder.mul(args[5], ir.Constant(_I64, 16))
            offs = builder.load(_ptr(context, builder, sig.args[4], args[4], row_start, lanes))
            pair = ir.Constant(ir.VectorType(_I64, 2), None)
            for k in (0, 1):
                pair = builder.insert_element(pair, args[2 + k], ir.Constant(_I32, k))
            pairs = builder.shuffle_vector(
                pair, pair, ir.Constant(ir.VectorType(_I32, 2 * n), [0, 1] * n)
            )
            dst = _ptr(context, builder, sig.args[0], args[0], args[1], vec)
            builder.store(builder.add(pairs, builder.zext(offs, vec)), dst, align=8)
            return context.get_dummy_value()

        return types.void(out, j, t, xyp, table, row), codegen

    return store


_store8, _store4 = _records_store(8), _records_store(4)


@intrinsic
def _popcount(typingctx, x):
    return types.int64(types.int64), lambda context, builder, sig, args: builder.ctpop(args[0])


@intrinsic
def _load4(typingctx, words, i):
    """``words[i : i + 4]`` (uint16) as one little-endian uint64."""

    def codegen(context, builder, sig, args):
        return builder.load(_ptr(context, builder, sig.args[0], args[0], args[1], _I64), align=2)

    return types.uint64(words, i), codegen


def _set_bits_table() -> np.ndarray:
    """Set-bit offsets for :func:`_records_store`: 16 uint8 lanes a row, even lanes 0.

    Row m < 256: lane 2k + 1 = index of the k-th set bit of m; row 256 + m (m < 16): the same
    for the bits 8-11 of the 12-bit mask m << 8.
    """
    tab = np.zeros((272, 16), dtype=np.uint8)
    for row in range(272):
        bits = [b for b in range(12) if (row << 8 if row >= 256 else row) >> b & 1]
        tab[row, 1 : 2 * len(bits) : 2] = bits
    return tab


def _burst_table() -> np.ndarray:
    """Burst descriptors indexed by the codes of 4 words (code k in bits 4k..4k+3).

    A burst is ``[TIME_LOW] [ADDR_Y] (ADDR_X | [VECT_BASE_X] VECT_8 | [VECT_BASE_X] VECT_12)``;
    0 for anything else. Bits: 0-2 words, 3 TIME_LOW, 4 ADDR_Y, 5 VECT_BASE_X, 6 main word is
    ADDR_X, 8/16/24 bit offsets in the 64-bit word group of the y, vector base and main words,
    32-35 vector bits of the main word (0, 8 or 12), 36/49/62: one ADDR_X, VECT_BASE_X, vector
    word for the kernel's word counts (``cnt += e >> 36``).
    """
    key = np.arange(1 << 16, dtype=np.int64)
    code = np.stack([(key >> (4 * k)) & 0xF for k in range(4)])
    has_tl = code[0] == TIME_LOW
    pos = has_tl.astype(np.int64)
    has_y = np.take_along_axis(code, pos[None], 0)[0] == ADDR_Y
    pos_bx = pos + has_y
    has_bx = np.take_along_axis(code, pos_bx[None], 0)[0] == VECT_BASE_X
    pos_main = pos_bx + has_bx
    main = np.take_along_axis(code, pos_main[None], 0)[0]
    is_ax = (main == ADDR_X) & ~has_bx
    nbits = np.select([main == VECT_8, main == VECT_12], [8, 12], 0)
    desc = (
        (pos_main + 1)
        | has_tl << 3
        | has_y << 4
        | has_bx << 5
        | is_ax << 6
        | (16 * pos) << 8
        | (16 * pos_bx) << 16
        | (16 * pos_main) << 24
        | nbits << 32
        | is_ax << 36
        | has_bx << 49
        | (nbits > 0) << 62
    )
    return np.where(is_ax | (nbits > 0), desc, 0).astype(np.uint64)


_SET_BITS = _set_bits_table()
_BURSTS = _burst_table()
_CODE_NIBBLES = np.uint64(0xF000F000F000F000)
_GATHER = np.uint64(0x1001001001)  # (nibbles of 4 words) * _GATHER >> 48: the 4 codes packed


@nb.njit(inline="always")
def _emit(out, j, t_ns, xyp, bits, room):
    """Write the events of the set ``bits`` below ``room`` at x = xyp's x + bit, from slot ``j``.

    Returns the next free slot. Writes 12 records whatever the bits (scratch after the last).
    """
    ok = bits & ((np.int64(1) << room) - 1)
    _store8(out, j, t_ns, xyp, _SET_BITS, ok & 0xFF)
    j += np.uint64(2 * _popcount(ok & 0xFF))
    _store4(out, j, t_ns, xyp, _SET_BITS, 256 + (ok >> 8))
    return j + np.uint64(2 * _popcount(ok >> 8))


@nb.njit(cache=True, nogil=True)
def _decode_kernel(words, start, ctx, out):
    """Decode ``words[start:]`` into ``out``: int64 pairs, events first, then triggers.

    ``out[-2 * _TRIGGER_CHUNK:]`` takes the triggers (t, id | p << 16), the rest the events
    (t, x | y << 16 | p << 32): both the layouts of their dtypes. Stops before a word that could
    overflow either part; returns ``(next_word, n_events, n_triggers)`` with the state saved, so
    the caller can resume. Events are written as whole records, vector words as 8 + 4 records
    with the event count advancing by the set bits only: up to 24 slots after the last event
    hold scratch data, hence the spare room of 13 events.

    Two loops decode the same words alike. The word loop branches on every word's code, which
    costs a mispredicted branch whenever single events (ADDR_X) and vectors alternate at
    random, as in a sensor readout. The burst loop reads 4 words at once and decodes one
    burst (see _burst_table) without branching on codes, but costs more per burst; it leaves
    anything else, and bursts with events out of range, to the word loop, one word at a time.
    Every SEGMENT words the counts of ADDR_X, VECT_BASE_X and vector words pick the loop for the
    next segment: bursts if 15-75 % of ADDR_X + VECT_BASE_X are ADDR_X and vector runs are short.
    """
    width, height = ctx[W_IDX], ctx[H_IDX]
    h16 = height << 16
    u2 = np.uint64(2)
    tbase = out.shape[0] - 2 * _TRIGGER_CHUNK
    cap = np.uint64(tbase - 26)
    n_words = words.shape[0]
    i = start
    if not ctx[S_HAS_TIME]:
        while i < n_words and (np.int64(words[i]) >> 12) != TIME_HIGH:
            i += 1
        ctx[C_SKIPPED] += i - start
        if i == n_words:
            return i, 0, 0
        ctx[S_HAS_TIME] = 1
        ctx[S_TIME_HIGH] = (np.int64(words[i]) & 0xFFF) << 12
        i += 1
    time_high = ctx[S_TIME_HIGH]  # (wraps << 24) | (high << 12), microseconds
    time_low, y, base_x, vpol = ctx[S_TIME_LOW], ctx[S_Y], ctx[S_BASE_X], ctx[S_VPOL]
    bursts, left = ctx[L_BURSTS], ctx[L_LEFT]
    cnt = ctx[L_COUNTS]  # ADDR_X, VECT_BASE_X and vector words in the segment (see above)
    dropped = 0
    j = np.uint64(0)  # slot index 2 * n, unsigned: numba emits no negative-index wraparound
    nt = 0
    full = False
    t_ns = (time_high | time_low) * 1000
    while i < n_words and not full and j <= cap:
        if left <= 0:
            n_ax, n_bx, n_v = cnt & 0x1FFF, (cnt >> 13) & 0x1FFF, cnt >> 26
            n = n_ax + n_bx
            if n > 0:
                bursts = np.int64(20 * n_ax >= 3 * n and 4 * n_ax <= 3 * n and 4 * n_v <= 5 * n_bx)
            cnt, left = 0, SEGMENT
        # every word or burst emits at most 12 events (24 slots): no capacity check inside
        block = i
        end = min(n_words, i + max(np.int64((cap - j) // np.uint64(24)), 1), i + left)
        while i < end and not full:
            run_end = end  # word loop: to the block end; burst loop: one word
            if bursts and i < n_words - 3:
                stop = min(end, n_words - 3)
                # burst state: y16 = y << 16, bxw = base word (x | pol << 11), base x = bxw + adv
                tt, y16, bxw, adv = time_high | time_low, y << 16, vpol << 11, base_x
                while i < stop:
                    q = _load4(words, i)
                    e = np.int64(_BURSTS[((q & _CODE_NIBBLES) * _GATHER) >> np.uint64(48)])
                    if e == 0:
                        break
                    w_y = np.int64(q >> np.uint64((e >> 8) & 63))
                    w_bx = np.int64(q >> np.uint64((e >> 16) & 63))
                    w_m = np.int64(q >> np.uint64((e >> 24) & 63))
                    new_y16 = ((w_y & 0x7FF) << 16) if e & 16 else y16
                    new_bxw = (w_bx & 0xFFF) if e & 32 else bxw
                    new_adv = 0 if e & 32 else adv
                    is_ax = (e >> 6) & 1
                    src = (w_m & 0xFFF) if is_ax else new_bxw
                    x0 = (src & 0x7FF) + (0 if is_ax else new_adv)
                    nbits = (e >> 32) & 0xF
                    if x0 + (nbits | is_ax) > width or new_y16 >= h16:
                        break  # events out of range: the word loop drops and counts them
                    i += e & 7
                    tt = ((tt & ~np.int64(0xFFF)) | np.int64(q & np.uint64(0xFFF))) if e & 8 else tt
                    y16, bxw, adv = new_y16, new_bxw, new_adv + nbits
                    cnt += e >> 36
                    xyp = x0 | y16 | ((src & 0x800) << 21)
                    m = (w_m & ((np.int64(1) << nbits) - 1)) | is_ax
                    j = _emit(out, j, tt * 1000, xyp, m, 12)
                time_low, y, base_x, vpol = tt & 0xFFF, y16 >> 16, (bxw & 0x7FF) + adv, bxw >> 11
                t_ns = tt * 1000
                run_end = min(i + 1, end)
            while i < run_end:
                w = np.int64(words[np.uint64(i)])  # unsigned: no wraparound code
                code = w >> 12
                i += 1
                if code == ADDR_Y:
                    y = w & 0x7FF
                elif code == ADDR_X:
                    cnt += 1
                    x = w & 0x7FF
                    ok = (x < width) & (y < height)
                    out[j] = t_ns
                    out[j + np.uint64(1)] = x | (y << 16) | (((w >> 11) & 1) << 32)
                    j += u2 * np.uint64(ok)
                    dropped += 1 - np.int64(ok)
                elif code == VECT_8 or code == VECT_12:
                    cnt += 1 << 26
                    m = w & (0xFFF if code == VECT_12 else 0xFF)
                    room = min(max(width - base_x, 0), 12) if y < height else 0
                    dropped += _popcount(m & ~((np.int64(1) << room) - 1))
                    j = _emit(out, j, t_ns, base_x | (y << 16) | (vpol << 32), m, room)
                    base_x += 12 if code == VECT_12 else 8
                elif code == VECT_BASE_X:
                    cnt += 1 << 13
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
                        ctx[C_WRAPS] += 1
                    time_high = (wraps << 24) | (h << 12)
                    t_ns = (time_high | time_low) * 1000
                elif code == EXT_TRIGGER:
                    if nt == _TRIGGER_CHUNK:  # no room: give the word back and stop
                        i -= 1
                        full = True
                        break
                    out[tbase + 2 * nt] = t_ns
                    out[tbase + 2 * nt + 1] = ((w >> 8) & 0xF) | ((w & 1) << 16)
                    nt += 1
                elif code == CONTINUED_4 or code == OTHERS or code == CONTINUED_12:
                    pass
                else:
                    ctx[C_UNKNOWN] += 1
                    ctx[U_BASE + code] += 1
        left -= i - block
    n = np.int64(j) // 2
    ctx[C_DROPPED] += dropped
    ctx[S_TIME_HIGH], ctx[S_TIME_LOW], ctx[S_Y] = time_high, time_low, y
    ctx[S_BASE_X], ctx[S_VPOL] = base_x, vpol
    ctx[L_BURSTS], ctx[L_COUNTS], ctx[L_LEFT] = bursts, cnt, left
    return i, n, nt


def decode_evt3(words: np.ndarray, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode EVT 3.0 words, updating the context ``ctx`` in place.

    Args:
        words: uint16 words, shape ``(N,)``, native (little-endian) order.
        ctx: decoder context from :func:`new_context`, carried across packets (stream state,
            counters of dropped/skipped/unknown words and wraps, sensor size; events with
            x >= width or y >= height are dropped).

    Returns:
        ``(events, triggers)``: :data:`EVENT_DTYPE` and :data:`TRIGGER_DTYPE` arrays in stream
        order, times in ns of the sensor clock (wraps unrolled); ``triggers`` is a shared
        read-only empty array when there are none.
    """
    # Most streams carry one or two events per word; vector-dense ones resume in new chunks.
    # Untouched pages of an allocation are never made resident, so the spare room is cheap.
    n_words = words.shape[0]
    out = np.empty(4 * n_words + 128 + 2 * _TRIGGER_CHUNK, dtype=np.int64)
    start, n, nt = _decode_kernel(words, 0, ctx, out)
    if start >= n_words:  # the common case: one pass
        return np.frombuffer(out, EVENT_DTYPE, count=n), _triggers(out, nt)
    chunks, trig_chunks = [np.frombuffer(out, EVENT_DTYPE, count=n)], [_triggers(out, nt)]
    while start < n_words:
        if nt < _TRIGGER_CHUNK:  # out of room for events: room for 12 per word
            out = np.empty(24 * (n_words - start) + 128 + 2 * _TRIGGER_CHUNK, dtype=np.int64)
        else:
            out = np.empty_like(out)
        start, n, nt = _decode_kernel(words, start, ctx, out)
        chunks.append(np.frombuffer(out, EVENT_DTYPE, count=n))
        trig_chunks.append(_triggers(out, nt))
    return concat_structured(chunks, EVENT_DTYPE), concat_structured(trig_chunks, TRIGGER_DTYPE)


def _triggers(out: np.ndarray, nt: int) -> np.ndarray:
    """The ``nt`` triggers at the end of a kernel output (a shared read-only array if none)."""
    if nt == 0:
        return _NO_TRIGGERS
    return np.frombuffer(out[out.shape[0] - 2 * _TRIGGER_CHUNK :], TRIGGER_DTYPE, count=nt)
