"""The four event representations of :mod:`.representations` on torch tensors (any device).

Events are passed as a mapping with 1-D tensors ``t`` (int64 ns), ``x``, ``y`` (integer pixel
coordinates) and ``p`` (polarity, ``> 0`` = ON), all on one device; :func:`events_to_torch`
builds one from a structured numpy array. A tuple ``(t, x, y, p)`` is accepted too. Every
function is vectorised (``index_put_`` with accumulation, ``scatter_add_``, ``scatter_reduce_``
with ``amax``), has no Python loop over events, and returns a float32 ``(C, H, W)`` tensor on the
events' device that matches the numpy/numba version to float32 rounding (the GPU sums in another
order). Events outside ``width`` x ``height`` are ignored; empty input gives zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["count_frame", "event_frame", "events_to_torch", "time_surface", "voxel_grid"]

TorchEvents = Mapping[str, torch.Tensor] | Sequence[torch.Tensor]
"""Events as ``{"t", "x", "y", "p"}`` tensors or a ``(t, x, y, p)`` tuple."""


def events_to_torch(
    events: np.ndarray, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Move a structured event array to ``device``.

    Args:
        events: 1-D structured array with fields ``t`` (ns), ``x``, ``y``, ``p``, e.g.
            :data:`~facealign_ros.events.types.EVENT_DTYPE`.
        device: torch device.

    Returns:
        ``{"t": int64 (N,), "x": int32 (N,), "y": int32 (N,), "p": uint8 (N,)}`` on ``device``.
    """
    dev = torch.device(device)
    return {
        "t": torch.from_numpy(np.ascontiguousarray(events["t"], dtype=np.int64)).to(dev),
        "x": torch.from_numpy(np.ascontiguousarray(events["x"], dtype=np.int32)).to(dev),
        "y": torch.from_numpy(np.ascontiguousarray(events["y"], dtype=np.int32)).to(dev),
        "p": torch.from_numpy(np.ascontiguousarray(np.asarray(events["p"]) > 0, np.uint8)).to(dev),
    }


def _unpack(events: TorchEvents) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if isinstance(events, Mapping):
        t, x, y, p = events["t"], events["x"], events["y"], events["p"]
    else:
        t, x, y, p = events
    return t, x, y, p


def _check_size(width: int, height: int) -> None:
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")


def _pixel_index(
    x: torch.Tensor, y: torch.Tensor, width: int, height: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(valid mask, y * W + x as int64)`` for the events."""
    xl = x.long()
    yl = y.long()
    valid = (xl >= 0) & (xl < width) & (yl >= 0) & (yl < height)
    return valid, yl * width + xl


def _float_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (exact agreement with the CPU), else float32."""
    return torch.float32 if device.type == "mps" else torch.float64


def count_frame(events: TorchEvents, width: int, height: int) -> torch.Tensor:
    """Count events per pixel and polarity (see :func:`.representations.count_frame`).

    Args:
        events: event tensors ``t, x, y, p``.
        width: W in pixels.
        height: H in pixels.

    Returns:
        float32 ``(2, H, W)``, channel 0 = OFF, 1 = ON, raw counts.
    """
    _check_size(width, height)
    _, x, y, p = _unpack(events)
    hw = height * width
    out = torch.zeros(2 * hw, dtype=torch.float32, device=x.device)
    valid, pix = _pixel_index(x, y, width, height)
    idx = ((p > 0).long() * hw + pix)[valid]
    out.index_put_((idx,), torch.ones_like(idx, dtype=torch.float32), accumulate=True)
    return out.view(2, height, width)


def time_surface(
    events: TorchEvents, width: int, height: int, t_ref_ns: int, tau_ns: float
) -> torch.Tensor:
    """Exponential time surface ``exp(-(t_ref - t_last) / tau)`` (``scatter_reduce_`` amax).

    See :func:`.representations.time_surface`: the latest event per pixel and polarity with
    ``t <= t_ref`` counts, 0 where there is none.

    Args:
        events: event tensors ``t, x, y, p``.
        width: W in pixels.
        height: H in pixels.
        t_ref_ns: reference time in ns.
        tau_ns: decay constant in ns (> 0).

    Returns:
        float32 ``(2, H, W)`` in ``[0, 1]``, channel 0 = OFF, 1 = ON.
    """
    _check_size(width, height)
    if not tau_ns > 0:
        raise ValueError(f"tau_ns must be positive, got {tau_ns}")
    t, x, y, p = _unpack(events)
    hw = height * width
    no_event = torch.iinfo(torch.int64).min
    last = torch.full((2 * hw,), no_event, dtype=torch.int64, device=t.device)
    valid, pix = _pixel_index(x, y, width, height)
    valid &= t <= t_ref_ns
    idx = ((p > 0).long() * hw + pix)[valid]
    last.scatter_reduce_(0, idx, t[valid].long(), reduce="amax", include_self=True)
    seen = last != no_event
    age = (t_ref_ns - torch.where(seen, last, torch.full_like(last, t_ref_ns))).to(
        _float_dtype(t.device)
    )
    out = torch.where(seen, torch.exp(-age / float(tau_ns)), torch.zeros_like(age))
    return out.to(torch.float32).view(2, height, width)


def voxel_grid(
    events: TorchEvents,
    width: int,
    height: int,
    bins: int,
    t_start_ns: int | None = None,
    t_end_ns: int | None = None,
    normalize: bool = False,
) -> torch.Tensor:
    """Signed voxel grid, bilinear in time, ``tn = (B - 1) (t - t0) / (t1 - t0)``.

    Same definition as :func:`.representations.voxel_grid` (events with ``t0 <= t <= t1``;
    ``t0``/``t1`` default to the min/max event time; ``normalize`` scales nonzero cells to zero
    mean and unit sample std).

    Args:
        events: event tensors ``t, x, y, p``.
        width: W in pixels.
        height: H in pixels.
        bins: number of time bins B (>= 1).
        t_start_ns: ``t0`` in ns, default the earliest event.
        t_end_ns: ``t1`` in ns, default the latest event.
        normalize: zero-mean unit-std over nonzero cells.

    Returns:
        float32 ``(B, H, W)``.
    """
    _check_size(width, height)
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    t, x, y, p = _unpack(events)
    hw = height * width
    out = torch.zeros(bins * hw, dtype=torch.float32, device=t.device)
    if t.numel() == 0:
        return out.view(bins, height, width)
    t = t.long()
    t0 = t.min() if t_start_ns is None else torch.tensor(int(t_start_ns), device=t.device)
    t1 = t.max() if t_end_ns is None else torch.tensor(int(t_end_ns), device=t.device)
    fdt = _float_dtype(t.device)
    span = (t1 - t0).to(fdt)
    scale = torch.where(span > 0, (bins - 1) / span.clamp(min=1), torch.zeros_like(span))
    valid, pix = _pixel_index(x, y, width, height)
    valid &= (t >= t0) & (t <= t1)
    tn = (t[valid] - t0).to(fdt) * scale
    b = tn.floor().long().clamp(max=bins - 1)
    pol = (p[valid] > 0).to(torch.float32) * 2 - 1
    w_right = (tn - b).to(torch.float32) * pol
    idx = b * hw + pix[valid]
    out.scatter_add_(0, idx, pol - w_right)
    right = b + 1 < bins
    out.scatter_add_(0, idx[right] + hw, w_right[right])
    if normalize:
        nz = out != 0
        vals = out[nz].to(fdt)
        n = vals.numel()
        if n:
            mean = vals.mean()
            std = vals.std() if n > 1 else torch.zeros_like(mean)
            vals = torch.where(std > 0, (vals - mean) / std.clamp(min=1e-30), vals - mean)
            out[nz] = vals.to(torch.float32)
    return out.view(bins, height, width)


def event_frame(
    events: TorchEvents,
    width: int,
    height: int,
    full_scale_count: int = 2,
    channels: int = 3,
) -> torch.Tensor:
    """CMFA-SSMER / v2e grey event frame (see :func:`.representations.event_frame`).

    ``(clip(ON - OFF, -fs, fs) + fs) / (2 fs)`` per pixel, repeated over ``channels``.

    Args:
        events: event tensors ``t, x, y, p``.
        width: W in pixels.
        height: H in pixels.
        full_scale_count: net count for full white/black (>= 1).
        channels: number of identical channels C (>= 1).

    Returns:
        float32 ``(C, H, W)`` in ``[0, 1]``, 0.5 where the net count is 0.
    """
    _check_size(width, height)
    if int(full_scale_count) < 1 or int(channels) < 1:
        raise ValueError("full_scale_count and channels must be >= 1")
    _, x, y, p = _unpack(events)
    net = torch.zeros(height * width, dtype=torch.int32, device=x.device)
    valid, pix = _pixel_index(x, y, width, height)
    sign = (p[valid] > 0).to(torch.int32) * 2 - 1
    net.index_put_((pix[valid],), sign, accumulate=True)
    fs = int(full_scale_count)
    grey = (net.clamp(-fs, fs).to(torch.float32) + fs) / (2 * fs)
    return grey.view(1, height, width).expand(int(channels), height, width).contiguous()
