"""The one preprocessing path from sensor data to model inputs (runtime, replay and training).

Given an affine crop ``A`` (see :mod:`facealign_ros.face.crop`), an RGB frame and an event
window, :func:`rgb_input` and :func:`event_input` build the ``(C, S, S)`` float32 tensors that
the CMFA network takes (RGB in ``[0, 1]``; the network normalises it). Event representations
are computed on the source region that the crop covers (at sensor resolution) and then warped
with ``A``, so a face of any size in the sensor gives the same input statistics; count-like
channels become densities per source pixel.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from facealign_ros.events import representations as reps
from facealign_ros.face.crop import (
    by_channel_groups,
    covering_roi,
    events_in_roi,
    shift_affine,
    warp_chw,
    warp_image,
)

REPRESENTATIONS = ("event_frame", "count", "time_surface", "voxel")
"""Event representation names, in the order their channels are stacked."""


@dataclass(frozen=True)
class InputSpec:
    """What the model sees: crop size, box margin, event window and representations.

    Attributes:
        size: crop side S in pixels (square).
        box_scale: face box = landmark extent x this factor.
        window_ms: event window length ending at the target time, milliseconds.
        representations: event representations stacked along channels (see
            :data:`REPRESENTATIONS`): ``event_frame`` 1 channel, ``count`` 2, ``time_surface`` 2,
            ``voxel`` ``voxel_bins``.
        voxel_bins: temporal bins of the voxel grid.
        tau_fraction: time-surface decay constant as a fraction of the window.
        count_scale: events per source pixel that map count channels to 1 (then clipped at 4).
        rgb_gray: feed the RGB branch a grey image repeated over 3 channels (colour-agnostic).
    """

    size: int = 128
    box_scale: float = 1.25
    window_ms: float = 30.0
    representations: tuple[str, ...] = ("event_frame", "time_surface", "voxel")
    voxel_bins: int = 3
    tau_fraction: float = 0.33
    count_scale: float = 2.0
    rgb_gray: bool = False

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"InputSpec.size must be >= 8, got {self.size}")
        for name in ("window_ms", "box_scale", "tau_fraction", "count_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"InputSpec.{name} must be a finite number > 0, got {value!r}")
        unknown = [r for r in self.representations if r not in REPRESENTATIONS]
        if unknown or not self.representations:
            raise ValueError(
                f"InputSpec.representations {self.representations!r}: choose from {REPRESENTATIONS}"
            )
        if self.voxel_bins < 2:
            raise ValueError("InputSpec.voxel_bins must be >= 2")

    @property
    def event_channels(self) -> int:
        """Number of event input channels."""
        per = {"event_frame": 1, "count": 2, "time_surface": 2, "voxel": self.voxel_bins}
        return sum(per[r] for r in self.representations)

    @property
    def window_ns(self) -> int:
        """Window length in nanoseconds."""
        return int(round(self.window_ms * 1e6))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (for checkpoint metadata)."""
        d = asdict(self)
        d["representations"] = list(self.representations)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(d) - known):
            raise ValueError(f"InputSpec: unknown keys {unknown}")
        d = dict(d)
        if "representations" in d:
            d["representations"] = tuple(d["representations"])
        return cls(**d)


def _source_scale(A: np.ndarray) -> float:
    """Crop pixels per source pixel (isotropic scale of ``A``)."""
    return math.sqrt(abs(float(np.linalg.det(A[:, :2]))))


def event_input(
    events: np.ndarray,
    A: np.ndarray,
    spec: InputSpec,
    sensor_width: int,
    sensor_height: int,
    t_end_ns: int,
) -> np.ndarray:
    """Event representations of one window, cropped: float32 ``(C, S, S)``.

    Args:
        events: :data:`~facealign_ros.events.EVENT_DTYPE` events of the window (``t`` within
            ``[t_end - window, t_end)``; others are ignored by the time-based channels).
        A: ``(2, 3)`` affine from sensor pixels to crop pixels.
        spec: the input specification.
        sensor_width: sensor width in pixels.
        sensor_height: sensor height in pixels.
        t_end_ns: end of the window (the target time), ns.

    Returns:
        Channels in ``spec.representations`` order. ``event_frame`` in ``[0, 1]`` (0.5 = no
        change), ``count`` densities in ``[0, 4]``, ``time_surface`` in ``[0, 1]``, ``voxel``
        signed densities clipped to ``[-4, 4]``.
    """
    S = spec.size
    x0, y0, x1, y1 = covering_roi(A, S, sensor_width, sensor_height)
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        return empty_event_input(spec)
    t_start = int(t_end_ns) - spec.window_ns
    ev = events_in_roi(events, (x0, y0, x1, y1))
    if ev.size and (int(ev["t"][0]) < t_start or int(ev["t"][-1]) >= int(t_end_ns)):
        ev = ev[(ev["t"] >= t_start) & (ev["t"] < int(t_end_ns))]
    chans = []
    for name in spec.representations:
        if name == "event_frame":
            chans.append(reps.event_frame(ev, w, h, full_scale_count=2, channels=1))
        elif name == "count":
            c = reps.count_frame(ev, w, h)
            chans.append(np.minimum(c / spec.count_scale, 4.0, out=c))
        elif name == "time_surface":
            tau = max(spec.window_ns * spec.tau_fraction, 1.0)
            chans.append(reps.time_surface(ev, w, h, int(t_end_ns) - 1, tau))
        else:
            v = reps.voxel_grid(ev, w, h, spec.voxel_bins, t_start, int(t_end_ns) - 1)
            chans.append(np.clip(v / spec.count_scale, -4.0, 4.0, out=v))
    stack = np.concatenate(chans, axis=0)
    A_roi = shift_affine(A, x0, y0)
    stack, A_roi = _area_downsample(stack, A_roi)
    out = warp_chw(stack, A_roi, S)
    if "event_frame" in spec.representations:
        # outside the sensor the event frame means "no change" (0.5), like an empty window
        valid = warp_image(np.ones(stack.shape[1:], np.float32), A_roi, S)
        i = _channel_offsets(spec)["event_frame"]
        out[i] += (1.0 - valid) * 0.5
    return out


def _area_downsample(stack: np.ndarray, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pre-shrink ``(C, h, w)`` by area averaging when the crop down-samples by more than 1.25x.

    Bilinear warping alone would alias sparse events away; area averaging keeps every event's
    contribution. Returns the shrunk stack and the affine from its pixels to the crop.
    """
    s = _source_scale(A)
    _, h, w = stack.shape
    if s > 0.8:
        return stack, A
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    hwc = np.moveaxis(stack, 0, -1)
    small = by_channel_groups(
        lambda g: cv2.resize(g, (nw, nh), interpolation=cv2.INTER_AREA), hwc
    ).reshape(nh, nw, -1)
    small = np.moveaxis(small, -1, 0)
    dx, dy = w / nw, h / nh  # source pixel p = D q + e for a shrunk pixel q (pixel centres)
    m = A[:, :2] @ np.diag([dx, dy])
    t = A[:, :2] @ np.array([0.5 * (dx - 1), 0.5 * (dy - 1)]) + A[:, 2]
    return np.ascontiguousarray(small), np.hstack([m, t[:, None]])


def channel_slices(spec: InputSpec) -> dict[str, slice]:
    """Representation name -> its channel range in :func:`event_input`'s output."""
    per = {"event_frame": 1, "count": 2, "time_surface": 2, "voxel": spec.voxel_bins}
    out, k = {}, 0
    for r in spec.representations:
        out[r] = slice(k, k + per[r])
        k += per[r]
    return out


def _channel_offsets(spec: InputSpec) -> dict[str, int]:
    return {r: s.start for r, s in channel_slices(spec).items()}


def empty_event_input(spec: InputSpec) -> np.ndarray:
    """What :func:`event_input` returns for a window without events: float32 ``(C, S, S)``.

    Zeros, with 0.5 ("no change") on the event-frame channel.
    """
    out = np.zeros((spec.event_channels, spec.size, spec.size), np.float32)
    if "event_frame" in spec.representations:
        out[_channel_offsets(spec)["event_frame"]] = 0.5
    return out


def rgb_input(image: np.ndarray, A: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Cropped RGB input in ``[0, 1]``: float32 ``(3, S, S)``.

    The network applies the ImageNet mean/std itself (so exported graphs take plain images).

    Args:
        image: ``(H, W, 3)`` uint8 RGB, or ``(H, W)`` / ``(H, W, 1)`` uint8 mono (repeated).
        A: ``(2, 3)`` affine from image pixels to crop pixels (RGB already registered to the
            event sensor, or ``A`` composed with the RGB->event homography's affine part).
        spec: the input specification.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_input: expected (H, W, 3) or (H, W) image, got {img.shape}")
    if spec.rgb_gray:
        g = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        img = np.repeat(g[:, :, None], 3, axis=2)
    crop = warp_image(img, A, spec.size).astype(np.float32) / 255.0
    return np.ascontiguousarray(np.moveaxis(crop, -1, 0))
