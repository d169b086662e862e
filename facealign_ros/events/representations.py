"""Dense event representations on the CPU: numba kernels, tonic-style functional core.

Every function takes a 1-D structured event array with fields ``t`` (ns), ``x``, ``y``, ``p``
(normally :data:`~facealign_ros.events.types.EVENT_DTYPE`; ``p > 0`` is ON) and returns a new
``float32`` array ``(C, H, W)``. Events outside ``width`` x ``height`` are skipped (nothing is
written out of bounds); empty input gives zeros. Kernels are serial (one core) and release the
GIL. Frozen dataclasses at the end carry parameters (tonic's ``functional`` vs ``transforms``);
:mod:`.representations_torch` has the same functions on torch tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from facealign_ros.events.types import EVENT_DTYPE, as_events

__all__ = [
    "CountFrame",
    "EventFrame",
    "TimeSurface",
    "VoxelGrid",
    "count_frame",
    "event_frame",
    "time_surface",
    "voxel_grid",
]

_NO_EVENT = np.iinfo(np.int64).min


def _check_size(width: int, height: int) -> None:
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")


# --------------------------------------------------------------------------- kernels
# Speed (measured): read the 16-byte records directly, index with unsigned ints (no wraparound
# checks), branch-free polarity, small (int32) scatter targets that stay in L2.


@njit(cache=True, nogil=True)
def _count_kernel(ev, out):  # pragma: no cover - compiled
    height, width = np.uint64(out.shape[1]), np.uint64(out.shape[2])
    hw = height * width
    flat = out.reshape(-1)
    for i in range(ev.shape[0]):
        e = ev[i]
        xi, yi = np.uint64(e.x), np.uint64(e.y)
        if (xi < width) & (yi < height):
            flat[np.uint64(e.p > 0) * hw + yi * width + xi] += np.float32(1.0)


@njit(cache=True, nogil=True)
def _last_age_kernel(ev, t_ref, age):  # pragma: no cover - compiled
    """Store ``t_ref - t`` (int32) of each cell's last event; return False if t decreases.

    Only valid for time-ordered input (last write wins) with ``t_ref - t < 2**31``.
    """
    height, width = np.uint64(age.shape[1]), np.uint64(age.shape[2])
    hw = height * width
    flat = age.reshape(-1)
    ordered, prev = True, ev[0].t
    for i in range(ev.shape[0]):
        e = ev[i]
        ti, xi, yi = e.t, np.uint64(e.x), np.uint64(e.y)
        ordered &= ti >= prev
        prev = ti
        if (ti <= t_ref) & (xi < width) & (yi < height):
            flat[np.uint64(e.p > 0) * hw + yi * width + xi] = np.int32(t_ref - ti)
    return ordered


@njit(cache=True, nogil=True)
def _last_time_kernel(ev, t_ref, last):  # pragma: no cover - compiled
    """Store each cell's latest event time (t <= t_ref), for input in any order."""
    height, width = np.uint64(last.shape[1]), np.uint64(last.shape[2])
    hw = height * width
    flat = last.reshape(-1)
    for i in range(ev.shape[0]):
        e = ev[i]
        ti, xi, yi = e.t, np.uint64(e.x), np.uint64(e.y)
        if (ti <= t_ref) & (xi < width) & (yi < height):
            k = np.uint64(e.p > 0) * hw + yi * width + xi
            flat[k] = max(flat[k], ti)


@njit(cache=True, nogil=True)
def _voxel_kernel(ev, t0, t1, out):  # pragma: no cover - compiled
    """Accumulate into ``out``; return the numbers of events before ``t0`` and after ``t1``."""
    bins = out.shape[0]
    height, width = np.uint64(out.shape[1]), np.uint64(out.shape[2])
    hw = height * width
    last_bin = np.uint64(bins - 1)
    flat = out.reshape(-1)
    scale = 0.0
    if t1 > t0:
        scale = (bins - 1) / float(t1 - t0)
    n_before, n_after = 0, 0
    for i in range(ev.shape[0]):
        e = ev[i]
        ti, xi, yi = e.t, np.uint64(e.x), np.uint64(e.y)
        if (ti < t0) | (ti > t1):
            n_before += ti < t0
            n_after += ti > t1
        elif (xi < width) & (yi < height):
            tn = float(ti - t0) * scale
            bi = np.int64(tn)  # signed conversion is cheaper than float -> uint64
            b = min(np.uint64(bi), last_bin)  # min() guards rounding at t1
            pol = np.float32(np.int64(e.p > 0) * 2 - 1)
            w_right = np.float32(tn - bi) * pol
            idx = b * hw + yi * width + xi
            flat[idx] += pol - w_right
            if b < last_bin:
                flat[idx + hw] += w_right
    return n_before, n_after


@njit(cache=True, nogil=True)
def _normalize_nonzero(grid):  # pragma: no cover - compiled
    flat = grid.reshape(-1)
    n, total, ss = 0, 0.0, 0.0
    for v in flat:
        if v != 0.0:
            n += 1
            total += v
    if n == 0:
        return
    mean = total / n
    for v in flat:
        if v != 0.0:
            ss += (v - mean) * (v - mean)
    std = math.sqrt(ss / (n - 1)) if n > 1 else 0.0
    for i in range(flat.shape[0]):
        v = flat[i]
        if v != 0.0:
            flat[i] = (v - mean) / std if std > 0.0 else v - mean


@njit(cache=True, nogil=True)
def _event_frame_kernel(ev, full_scale, net, out):  # pragma: no cover - compiled
    height, width = np.uint64(net.shape[0]), np.uint64(net.shape[1])
    flat = net.reshape(-1)
    for i in range(ev.shape[0]):
        e = ev[i]
        xi, yi = np.uint64(e.x), np.uint64(e.y)
        if (xi < width) & (yi < height):
            flat[yi * width + xi] += np.int32(e.p > 0) * 2 - 1
    inv = 1.0 / (2.0 * full_scale)
    res = out.reshape(out.shape[0], -1)
    for k in range(flat.shape[0]):
        v = min(max(flat[k], -full_scale), full_scale)
        g = (v + full_scale) * inv
        for c in range(res.shape[0]):
            res[c, k] = g


# --------------------------------------------------------------------------- functions


def count_frame(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """Count events per pixel and polarity.

    Args:
        events: structured events (``t`` ns, ``x``, ``y``, ``p``), any order.
        width: sensor width W in pixels.
        height: sensor height H in pixels.

    Returns:
        float32 ``(2, H, W)``; channel index is the polarity, 0 = OFF, 1 = ON. Raw counts, no
        normalisation.
    """
    _check_size(width, height)
    ev = as_events(events)
    out = np.zeros((2, int(height), int(width)), dtype=np.float32)
    if ev.shape[0]:
        _count_kernel(ev, out)
    return out


def time_surface(
    events: np.ndarray, width: int, height: int, t_ref_ns: int, tau_ns: float
) -> np.ndarray:
    """Exponentially decayed time surface of the last event per pixel and polarity.

    Value ``exp(-(t_ref - t_last) / tau)`` where ``t_last`` is the latest event time at the pixel
    for that polarity with ``t_last <= t_ref``; 0 where no such event. Values lie in ``(0, 1]``
    (1 for an event exactly at ``t_ref``); events after ``t_ref`` are ignored. Input order does
    not matter (the maximum time wins; time-ordered input takes the fast path). The exponential
    is evaluated in float32 (relative error about ``1e-7 * age / tau``).

    Args:
        events: structured events (``t`` ns, ``x``, ``y``, ``p``).
        width: sensor width W in pixels.
        height: sensor height H in pixels.
        t_ref_ns: reference time in ns, usually the end of the window.
        tau_ns: decay constant in ns (> 0).

    Returns:
        float32 ``(2, H, W)``; channel 0 = OFF, 1 = ON.
    """
    _check_size(width, height)
    if not tau_ns > 0:
        raise ValueError(f"tau_ns must be positive, got {tau_ns}")
    ev = as_events(events)
    shape = (2, int(height), int(width))
    if ev.shape[0] == 0:
        return np.zeros(shape, dtype=np.float32)
    t_ref = np.int64(t_ref_ns)
    if int(t_ref) - int(ev[0]["t"]) < 2**31:  # if time-ordered: int32 ages, last write wins
        age = np.full(shape, -1, dtype=np.int32)
        if _last_age_kernel(ev, t_ref, age):
            return _decay(age.astype(np.float32), age < 0, tau_ns)
    last = np.full(shape, _NO_EVENT, dtype=np.int64)  # any order or long span: max time
    _last_time_kernel(ev, t_ref, last)
    return _decay((t_ref - last).astype(np.float32), last == _NO_EVENT, tau_ns)


def _decay(age: np.ndarray, empty: np.ndarray, tau_ns: float) -> np.ndarray:
    """``exp(-age / tau)`` in place on float32 ages (vectorised exp), 0 where ``empty``."""
    age[empty] = np.inf
    np.multiply(age, np.float32(-1.0 / tau_ns), out=age)
    return np.exp(age, out=age)


def voxel_grid(
    events: np.ndarray,
    width: int,
    height: int,
    bins: int,
    t_start_ns: int | None = None,
    t_end_ns: int | None = None,
    normalize: bool = False,
) -> np.ndarray:
    """Signed event volume with bilinear interpolation in time (Zhu et al. 2019, E-RAFT).

    Each event at ``t`` gets ``tn = (B - 1) * (t - t0) / (t1 - t0)`` and adds its polarity
    (+1 ON, -1 OFF) to bins ``floor(tn)`` and ``floor(tn) + 1`` with weights ``1 - frac`` and
    ``frac``, so an event at ``t0`` lands wholly in bin 0 and one at ``t1`` wholly in bin B-1.
    Only events with ``t0 <= t <= t1`` count. If ``t1 <= t0`` (or ``B == 1``) every event goes
    to bin 0.

    Args:
        events: structured events (``t`` ns, ``x``, ``y``, ``p``).
        width: sensor width W in pixels.
        height: sensor height H in pixels.
        bins: number of time bins B (>= 1).
        t_start_ns: ``t0`` in ns; default the earliest event time.
        t_end_ns: ``t1`` in ns; default the latest event time.
        normalize: if True, the nonzero cells are shifted and scaled to zero mean and unit
            standard deviation (sample std, ``n - 1``; only the mean is removed when fewer than
            two cells are nonzero or the std is 0); zero cells stay 0 (E-RAFT convention).

    Returns:
        float32 ``(B, H, W)``.
    """
    _check_size(width, height)
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    ev = as_events(events)
    out = np.zeros((int(bins), int(height), int(width)), dtype=np.float32)
    if ev.shape[0] == 0:
        return out
    # Defaults assume time order (first/last event), which costs no extra pass; the kernel
    # counts events outside [t0, t1], and unordered input is redone with the true min/max.
    t0 = int(ev[0]["t"]) if t_start_ns is None else int(t_start_ns)
    t1 = int(ev[-1]["t"]) if t_end_ns is None else int(t_end_ns)
    n_before, n_after = _voxel_kernel(ev, np.int64(t0), np.int64(t1), out)
    if (t_start_ns is None and n_before) or (t_end_ns is None and n_after):
        t0 = int(ev["t"].min()) if t_start_ns is None else t0
        t1 = int(ev["t"].max()) if t_end_ns is None else t1
        out[...] = 0.0
        _voxel_kernel(ev, np.int64(t0), np.int64(t1), out)
    if normalize:
        _normalize_nonzero(out)
    return out


def event_frame(
    events: np.ndarray,
    width: int,
    height: int,
    full_scale_count: int = 2,
    channels: int = 3,
) -> np.ndarray:
    """Grey event frame as used by CMFA-SSMER (v2e's DVS-frame rendering).

    What it follows: the CMFA-SSMER code (github iulab-hongik/CMFA-SSMER) does not build its
    representations; its loaders read pre-rendered 8-bit images from ``<root>/frame``,
    ``voxel`` and ``timesurface`` folders of v2e-simulated data (``event_v2e``,
    ``celebvhq_scene_v2e``), convert them to 3-channel RGB and apply ``ToTensor`` and the
    ImageNet ``Normalize``. The frame therefore follows v2e's DVS frame (``EventRenderer``):
    per pixel the net count ``ON - OFF`` over the window, clipped to ``+-full_scale_count``
    (v2e ``--dvs_vid_full_scale``, default 2) and mapped linearly to ``[0, 1]``:
    ``(clip(on - off) + fs) / (2 fs)``, so 0.5 means "no net change", 1 white (ON), 0 black
    (OFF). The grey value is repeated over ``channels`` (3, like the RGB PNG the authors load).
    Not reproduced: v2e's 8-bit truncation (``uint8(v * 255)``) and per-packet clipping; the
    ImageNet mean/std normalisation belongs to the model's preprocessing.

    Args:
        events: structured events (``t`` ns, ``x``, ``y``, ``p``) of one window.
        width: sensor width W in pixels.
        height: sensor height H in pixels.
        full_scale_count: net count giving full white/black (>= 1).
        channels: number of identical output channels C (>= 1).

    Returns:
        float32 ``(C, H, W)`` in ``[0, 1]``; 0.5 everywhere for an empty input.
    """
    _check_size(width, height)
    if int(full_scale_count) < 1 or int(channels) < 1:
        raise ValueError(f"full_scale_count and channels must be >= 1, got {full_scale_count}")
    ev = as_events(events)
    net = np.zeros((int(height), int(width)), dtype=np.int32)
    out = np.empty((int(channels), int(height), int(width)), dtype=np.float32)
    _event_frame_kernel(ev, np.int32(full_scale_count), net, out)
    return out


# --------------------------------------------------------------------------- wrappers
# Each wrapper validates its parameters at construction by running its function on no events.

_NO_EVENTS = np.zeros(0, dtype=EVENT_DTYPE)


@dataclass(frozen=True)
class CountFrame:
    """Per-polarity event counts, see :func:`count_frame`. Output float32 ``(2, H, W)``."""

    width: int
    height: int

    def __post_init__(self) -> None:
        self(_NO_EVENTS)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        """Apply :func:`count_frame` to ``events``."""
        return count_frame(events, self.width, self.height)


@dataclass(frozen=True)
class TimeSurface:
    """Exponential time surface, see :func:`time_surface`; ``tau_ns`` in ns. ``(2, H, W)``."""

    width: int
    height: int
    tau_ns: float

    def __post_init__(self) -> None:
        self(_NO_EVENTS)

    def __call__(self, events: np.ndarray, t_ref_ns: int | None = None) -> np.ndarray:
        """Apply :func:`time_surface`; ``t_ref_ns`` defaults to the latest event time (or 0)."""
        if t_ref_ns is None:
            t_ref_ns = int(events["t"].max()) if len(events) else 0
        return time_surface(events, self.width, self.height, t_ref_ns, self.tau_ns)


@dataclass(frozen=True)
class VoxelGrid:
    """Bilinear signed voxel grid, see :func:`voxel_grid`. Output float32 ``(B, H, W)``."""

    width: int
    height: int
    bins: int
    normalize: bool = False

    def __post_init__(self) -> None:
        self(_NO_EVENTS)

    def __call__(
        self, events: np.ndarray, t_start_ns: int | None = None, t_end_ns: int | None = None
    ) -> np.ndarray:
        """Apply :func:`voxel_grid` over ``[t_start_ns, t_end_ns]`` (default: event span)."""
        return voxel_grid(
            events, self.width, self.height, self.bins, t_start_ns, t_end_ns, self.normalize
        )


@dataclass(frozen=True)
class EventFrame:
    """CMFA-SSMER / v2e grey event frame, see :func:`event_frame`. Output ``(C, H, W)``."""

    width: int
    height: int
    full_scale_count: int = 2
    channels: int = 3

    def __post_init__(self) -> None:
        self(_NO_EVENTS)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        """Apply :func:`event_frame` to ``events``."""
        return event_frame(events, self.width, self.height, self.full_scale_count, self.channels)
