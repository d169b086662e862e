"""Representation throughput against tonic's functional transforms (same events, same process).

Ours are the numba kernels of :mod:`facealign_ros.events.representations` (serial, one core).
Tonic 1.7's ``to_timesurface_numpy``, ``to_voxel_grid_numpy`` and ``to_frame_numpy`` are plain
numpy (``np.add.at`` / fancy indexing, also one core). Each figure is the median of ``repeats``
runs after one warm-up run (numba compilation excluded). Tonic gets a structured array with
fields ``x, y, t, p`` and ``t`` in microseconds; outputs are compared where the definitions
match, and the differences are written to ``notes``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facealign_ros.events import representations as rep
from facealign_ros.events.types import EVENT_DTYPE
from training.bench.timing import interleaved_medians

TONIC_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
"""Event dtype handed to tonic (its own ``DVSGesture``-style layout; ``t`` in us)."""


def _to_tonic(events: np.ndarray) -> np.ndarray:
    out = np.empty(events.shape[0], dtype=TONIC_DTYPE)
    out["x"] = events["x"]
    out["y"] = events["y"]
    out["t"] = events["t"] // 1000
    out["p"] = events["p"]
    return out


def _maxdiff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def bench_representations(
    events: np.ndarray,
    width: int,
    height: int,
    repeats: int = 3,
    bins: int = 5,
    tau_us: float = 10_000.0,
) -> dict[str, Any]:
    """Throughput of time surface, voxel grid and count frame, ours vs tonic.

    Args:
        events: :data:`EVENT_DTYPE` events (t in ns), sorted by time; they are used with ``t``
            rounded down to whole microseconds so that both sides see the same input.
        width: sensor width W in pixels.
        height: sensor height H in pixels.
        repeats: timed runs per figure (median reported).
        bins: voxel-grid time bins.
        tau_us: time-surface decay constant in microseconds.

    Returns:
        dict with ``time_surface_mev_s``, ``voxel_grid_mev_s``, ``count_frame_mev_s``,
        ``event_frame_mev_s`` (ours, Mev/s), ``*_vs_tonic`` (our rate / tonic's rate, None if
        tonic is missing), ``tonic_*_mev_s`` and ``notes`` (list of str).
    """
    if events.dtype != EVENT_DTYPE:
        raise TypeError("events must have EVENT_DTYPE")
    if events.size < 2:
        raise ValueError("need at least two events")
    ev = events.copy()
    ev["t"] = (ev["t"] // 1000) * 1000
    if not np.all(ev["t"][1:] >= ev["t"][:-1]):
        ev = ev[np.argsort(ev["t"], kind="stable")]
    n = ev.size
    t0_us, t1_us = int(ev["t"][0]) // 1000, int(ev["t"][-1]) // 1000
    t_ref_ns = (t1_us + 1) * 1000  # tonic's reference: start + dt with dt = span + 1 us
    tau_ns = tau_us * 1000.0
    notes = [
        f"{n} events, {width}x{height}, span {(t1_us - t0_us) / 1e3:.1f} ms, voxel bins {bins}, "
        f"tau {tau_us:g} us; ours: numba, one thread; tonic: numpy, one thread; "
        f"median of {repeats} interleaved rounds after a warm-up"
    ]

    ours = {
        "time_surface": lambda: rep.time_surface(ev, width, height, t_ref_ns, tau_ns),
        "voxel_grid": lambda: rep.voxel_grid(ev, width, height, bins),
        "count_frame": lambda: rep.count_frame(ev, width, height),
        "event_frame": lambda: rep.event_frame(ev, width, height),
    }
    out: dict[str, Any] = {}
    notes.append("event_frame (CMFA-SSMER / v2e DVS frame) has no tonic counterpart")
    try:
        import tonic.functional as tf
    except ImportError:
        for name, sec in interleaved_medians(ours, repeats).items():
            out[f"{name}_mev_s"] = n / sec / 1e6
        for name in ("time_surface", "voxel_grid", "count_frame"):
            out[f"{name}_vs_tonic"] = None
        notes.append("tonic not installed: no comparison")
        out["notes"] = notes
        return out

    tev = _to_tonic(ev)
    sensor = (width, height, 2)
    vox_in = tev.copy()  # to_voxel_grid_numpy rewrites p (0 -> -1) in place; idempotent after
    theirs = {
        "time_surface": lambda: tf.to_timesurface_numpy(
            tev, sensor, dt=t1_us - t0_us + 1, tau=tau_us
        ),
        "voxel_grid": lambda: tf.to_voxel_grid_numpy(vox_in, sensor, n_time_bins=bins),
        "count_frame": lambda: tf.to_frame_numpy(tev, sensor, event_count=n),
    }
    fns = dict(ours) | {f"tonic_{k}": f for k, f in theirs.items()}
    secs = interleaved_medians(fns, repeats)
    for name in ours:
        out[f"{name}_mev_s"] = n / secs[name] / 1e6
    for name in theirs:
        rate = n / secs[f"tonic_{name}"] / 1e6
        out[f"tonic_{name}_mev_s"] = rate
        out[f"{name}_vs_tonic"] = out[f"{name}_mev_s"] / rate

    notes += _compare_with_tonic(tf, ev, tev, width, height, bins, t_ref_ns, tau_us)
    out["notes"] = notes
    return out


def _compare_with_tonic(
    tf: Any,
    ev: np.ndarray,
    tev: np.ndarray,
    width: int,
    height: int,
    bins: int,
    t_ref_ns: int,
    tau_us: float,
) -> list[str]:
    """Check outputs where the definitions agree and describe where tonic differs."""
    notes = []
    sensor = (width, height, 2)
    n = ev.size
    t0_us, t1_us = int(tev["t"][0]), int(tev["t"][-1])

    ts_t = tf.to_timesurface_numpy(tev, sensor, dt=t1_us - t0_us + 1, tau=tau_us)[0]
    ts_o = rep.time_surface(ev, width, height, t_ref_ns, tau_us * 1000.0)
    notes.append(
        "time_surface: same definition as tonic's single-slice surface "
        f"(max |diff| {_maxdiff(ts_o, ts_t):.1e}); tonic returns float64 (n_slices, P, H, W) and "
        "keeps its memory across slices; ours takes any t_ref and ignores later events"
    )

    cf_t = tf.to_frame_numpy(tev, sensor, event_count=n)[0]
    cf_o = rep.count_frame(ev, width, height)
    lost = n - int(tf.to_frame_numpy(tev, sensor, n_time_bins=1)[0].astype(np.int64).sum())
    hot = np.zeros(40_000, dtype=TONIC_DTYPE)
    hot["t"] = np.arange(hot.size)
    hot_count = int(tf.to_frame_numpy(hot, (2, 2, 2), event_count=hot.size)[0, 0, 0, 0])
    notes.append(
        f"count_frame: equal to tonic's to_frame(event_count=N) "
        f"(max |diff| {_maxdiff(cf_o, cf_t):g}); tonic's frames are int16 and wrap past 32767 "
        f"events per pixel (40000 events at one pixel -> {hot_count}); with n_time_bins=1 "
        f"tonic's window [t0, t0 + span) drops the {lost} events at the last timestamp"
    )

    vin = tev.copy()
    vg_t = tf.to_voxel_grid_numpy(vin, sensor, n_time_bins=bins)[:, 0]
    vg_plus = rep.voxel_grid(ev, width, height, bins + 1)
    vg_o = rep.voxel_grid(ev, width, height, bins)
    kept = float(np.abs(vg_t).sum() / max(np.abs(vg_plus).sum(), 1e-30))
    notes.append(
        f"voxel_grid: tonic scales time by B, not B-1 (tn = B (t - t0) / (t1 - t0)), so its grid "
        f"equals our (B+1)-bin grid without the last bin (max |diff| "
        f"{_maxdiff(vg_plus[:bins], vg_t):.1e}): events at t1 and the upper half of bin B-1 are "
        f"dropped ({100 * (1 - kept):.1f}% of the absolute weight here), and it differs from the "
        f"Zhu/E-RAFT (B-1) grid by up to {_maxdiff(vg_o, vg_t):.2f}"
    )
    small = tev[:1000].copy().astype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "u1")])
    try:
        bad = tf.to_voxel_grid_numpy(small, sensor, n_time_bins=bins)[:, 0]
        ref = rep.voxel_grid(ev[:1000], width, height, bins + 1)[:bins]
        unsigned = f"OFF events become +255 (max |diff| on 1000 events {_maxdiff(ref, bad):.0f})"
    except (OverflowError, ValueError) as exc:
        unsigned = f"it raises {type(exc).__name__} ({exc}) under numpy 2, +255 under numpy 1"
    notes.append(
        "voxel_grid: tonic rewrites p in place (pols[pols == 0] = -1), mutating the caller's "
        f"events; with an unsigned p field (uint8, as in our dtype) {unsigned}; its dtype check "
        "`assert 'x' and 'y' and 't' and 'p' in names` only tests 'p'; output is float64 "
        "(B, 1, H, W)"
    )
    return notes


def main() -> None:  # pragma: no cover - manual run
    """Run on 5 M random events at 346x260 (DAVIS346) and print the figures."""
    import json

    rng = np.random.default_rng(0)
    n = 5_000_000
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["t"] = np.sort(rng.integers(0, 1_000_000, n)) * 1000  # 1 s, 5 Mev/s
    events["x"] = rng.integers(0, 346, n)
    events["y"] = rng.integers(0, 260, n)
    events["p"] = rng.integers(0, 2, n)
    print(json.dumps(bench_representations(events, 346, 260), indent=1))  # noqa: T201


if __name__ == "__main__":  # pragma: no cover
    main()
