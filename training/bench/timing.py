"""Timing for side-by-side benchmarks: warm up, then interleave the contenders' runs.

Interleaving (ours, peer, ours, peer, ...) exposes every contender to the same machine load, so
their ratio stays meaningful on a shared machine even when absolute rates move.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each callable over ``repeats`` interleaved rounds (after a warm-up).

    Args:
        fns: name -> callable to time.
        repeats: timed rounds; each round runs every callable once, in order.

    Returns:
        name -> median wall time in seconds.
    """
    for fn in fns.values():
        fn()  # warm-up: JIT compilation, page faults, caches
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}
