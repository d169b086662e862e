"""``libcaer_cmp`` decoder kernel (numba): EVT 3.0-like 16-bit words vectorised along y.

Codes (top 4 bits): 0 TIME_HIGH, 1 TIME_LOW (12 bits each, microseconds), 2 ADDR_X (x in bits
0-10, remembered), 3 ADDR_Y (y in bits 0-10, polarity bit 11; emits one event at the remembered x),
4 VECT_BASE_Y (base y and polarity), 5 VECT_8 / 6 VECT_12 (valid bits; bit i emits at base_y + i,
then base_y advances by 8 / 12). Time restarts at zero with every packet and is added to the
packet's ``time_base`` (ns): t = time_base + ((high << 12) | low) * 1000. x, base y and polarity
carry across packets. Other codes are unknown: counted and skipped.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from facealign_ros.events.types import EVENT_DTYPE

TIME_HIGH, TIME_LOW, ADDR_X, ADDR_Y, VECT_BASE_Y, VECT_8, VECT_12 = 0, 1, 2, 3, 4, 5, 6

S_X, S_BASE_Y, S_VPOL = 0, 1, 2
STATE_SIZE = 3


@nb.njit(cache=True, nogil=True)
def _upper_bound(words: np.ndarray) -> int:
    n = 0
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        code = w >> 12
        if code == ADDR_Y:
            n += 1
        elif code == VECT_8 or code == VECT_12:
            v = w & (0xFF if code == VECT_8 else 0xFFF)
            while v:
                v &= v - 1
                n += 1
    return n


@nb.njit(cache=True, nogil=True)
def _kernel(words, time_base, width, height, state, counters, unknown, out):
    x = state[S_X]
    base_y = state[S_BASE_Y]
    vpol = state[S_VPOL]
    high = np.int64(0)
    low = np.int64(0)
    n = 0
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        code = w >> 12
        if code == ADDR_Y:
            y = w & 0x7FF
            if x < width and y < height:
                r = out[n]
                r.t = time_base + ((high << 12) | low) * 1000
                r.x = x
                r.y = y
                r.p = (w >> 11) & 1
                n += 1
            else:
                counters[0] += 1
        elif code == ADDR_X:
            x = w & 0x7FF
        elif code == TIME_LOW:
            low = w & 0xFFF
        elif code == TIME_HIGH:
            high = w & 0xFFF
        elif code == VECT_BASE_Y:
            base_y = w & 0x7FF
            vpol = (w >> 11) & 1
        elif code == VECT_8 or code == VECT_12:
            nbits = 8 if code == VECT_8 else 12
            t = time_base + ((high << 12) | low) * 1000
            for b in range(nbits):
                if (w >> b) & 1:
                    y = base_y + b
                    if x < width and y < height:
                        r = out[n]
                        r.t = t
                        r.x = x
                        r.y = y
                        r.p = vpol
                        n += 1
                    else:
                        counters[0] += 1
            base_y += nbits
        else:
            counters[2] += 1
            unknown[code] += 1
    state[S_X] = x
    state[S_BASE_Y] = base_y
    state[S_VPOL] = vpol
    return n


def decode_libcaer_cmp(
    words: np.ndarray,
    time_base: int,
    width: int,
    height: int,
    state: np.ndarray,
    counters: np.ndarray,
    unknown: np.ndarray,
) -> np.ndarray:
    """Decode ``libcaer_cmp`` uint16 words; ``state`` (int64, 3) is updated in place.

    ``counters`` follows :mod:`facealign_ros.events.evt3`'s layout (dropped, skipped, unknown,
    wraps). Returns in-range events in stream order.
    """
    out = np.empty(_upper_bound(words), dtype=EVENT_DTYPE)
    n = _kernel(words, np.int64(time_base), width, height, state, counters, unknown, out)
    return out[:n]
