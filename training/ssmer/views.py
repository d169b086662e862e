"""SSMER views: several event representations of one window, each augmented on its own.

Every view has the full channel layout of the CMFA event input (``spec.representations``,
e.g. event frame | time surface | voxel grid = 6 channels), so the encoder is exactly the CMFA
event backbone. A *single-representation* view fills only its own channels and leaves the
others at their empty-window values (:func:`~facealign_ros.face.preprocess.empty_event_input`);
the view ``all`` fills every channel (what the fine-tuned model sees).

Augmentation, MoCo-v2 style, adapted to events:

* consistent across views (they must show the same signal): the event-level drop / noise, so
  every representation is computed from the same events;
* per view (SimSiam needs different views): the crop (scale, shift, rotation: a random resized
  crop around the window's box), the horizontal mirror, a contrast gain around each channel's
  neutral value and a Gaussian blur.

For the dense objective (:func:`~training.ssmer.model.dense_simsiam_loss`)
:func:`make_views_with_points` also returns where a fixed grid of sensor points around the box
lands in every view (crop, rotation and mirror applied), so features of the same place in the
scene can be matched across views.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import cv2
import numpy as np

from facealign_ros.events import EVENT_DTYPE, concat_events
from facealign_ros.face.crop import Box, crop_affine, transform_points
from facealign_ros.face.preprocess import (
    InputSpec,
    channel_slices,
    empty_event_input,
    event_input,
)
from training.ssmer.sources import Window

ALL = "all"


@dataclass(frozen=True)
class ViewAugment:
    """Augmentation of SSMER views (see the module docstring).

    Attributes:
        scale: crop side multiplied by ``exp(U(-s, s))`` per view.
        shift: crop centre moved by ``N(0, shift * side)`` per axis and view.
        rotation_deg: crop rotated by ``U(-r, r)`` per view.
        flip_prob: probability of mirroring a view.
        gain: contrast around the channel's neutral value multiplied by ``U(1/g, g)``.
        blur_prob: probability of a Gaussian blur (sigma ``U(0.3, 1.2)`` px) per view.
        event_drop_max: fraction ``U(0, d)`` of the window's events removed (all views).
        event_noise_max: uniform noise events up to this fraction (all views).
    """

    scale: float = 0.25
    shift: float = 0.08
    rotation_deg: float = 15.0
    flip_prob: float = 0.5
    gain: float = 1.3
    blur_prob: float = 0.3
    event_drop_max: float = 0.3
    event_noise_max: float = 0.1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ViewAugment:
        """Build from a dict; unknown keys are an error."""
        if unknown := sorted(set(d) - {f.name for f in fields(cls)}):
            raise ValueError(f"ViewAugment: unknown keys {unknown}")
        return cls(**d)


def check_views(views: tuple[str, ...], spec: InputSpec) -> None:
    """Raise ValueError unless there are >= 2 views, each ``all`` or one of the spec's reps."""
    if len(views) < 2:
        raise ValueError(f"SSMER needs at least two views, got {list(views)}")
    bad = [v for v in views if v != ALL and v not in spec.representations]
    if bad:
        raise ValueError(
            f"views {bad} are not among the input representations {list(spec.representations)}"
            f" (or {ALL!r})"
        )


def make_views(
    win: Window,
    spec: InputSpec,
    views: tuple[str, ...],
    aug: ViewAugment,
    rng: np.random.Generator,
) -> np.ndarray:
    """The views of one window: float32 ``(V, C, S, S)`` with ``C = spec.event_channels``.

    Args:
        win: the window (events near its box).
        spec: the CMFA input specification (channel layout, crop size, window length).
        views: representation name (or ``all``) of each view.
        aug: augmentation settings.
        rng: the sample's generator (all randomness comes from it).
    """
    return _render_views(win, spec, views, aug, rng)[0]


def make_views_with_points(
    win: Window,
    spec: InputSpec,
    views: tuple[str, ...],
    aug: ViewAugment,
    rng: np.random.Generator,
    grid: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The views of :func:`make_views` (same draws) and where a point grid lands in each.

    Returns:
        ``(views, points)``: views float32 ``(V, C, S, S)``; points float32 ``(V, grid**2, 2)``,
        the ``grid x grid`` sensor points of :func:`box_grid` in each view as ``(x, y)`` in the
        ``[-1, 1]`` coordinates of ``torch.nn.functional.grid_sample`` (``align_corners=False``:
        -1 and 1 are the crop's outer edges); a point outside ``[-1, 1]`` is not in that view.
    """
    out, affines, flips = _render_views(win, spec, views, aug, rng)
    return out, view_points(box_grid(win.box, grid), affines, flips, spec.size)


def box_grid(box: Box, grid: int, extent: float = 0.8) -> np.ndarray:
    """``(grid**2, 2)`` sensor points (x, y), px: a regular grid over ``extent`` of the box side."""
    if grid < 1:
        raise ValueError(f"box_grid: grid must be >= 1, got {grid}")
    u = (np.arange(grid) + 0.5) / grid - 0.5
    gx, gy = np.meshgrid(box.cx + u * extent * box.side, box.cy + u * extent * box.side)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def view_points(
    points: np.ndarray, affines: np.ndarray, flips: np.ndarray, size: int
) -> np.ndarray:
    """Sensor points ``(K, 2)`` in each view's ``grid_sample`` coordinates: ``(V, K, 2)``.

    Args:
        points: sensor pixel coordinates (x, y).
        affines: ``(V, 2, 3)`` sensor -> crop pixel maps (:func:`crop_affine`).
        flips: ``(V,)`` bools, the view was mirrored after cropping.
        size: crop side S, px (pixel centres at 0..S-1).
    """
    out = np.empty((len(affines), len(points), 2), np.float32)
    for k, (A, flip) in enumerate(zip(affines, flips, strict=True)):
        p = transform_points(points, A)
        if flip:
            p[:, 0] = size - 1 - p[:, 0]
        out[k] = (p + 0.5) * (2.0 / size) - 1.0
    return out


def _render_views(
    win: Window,
    spec: InputSpec,
    views: tuple[str, ...],
    aug: ViewAugment,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views ``(V, C, S, S)``, their crop affines ``(V, 2, 3)`` and mirror flags ``(V,)``."""
    events = _augment_events(win, aug, rng)
    slices = channel_slices(spec)
    out = np.empty((len(views), spec.event_channels, spec.size, spec.size), np.float32)
    affines = np.empty((len(views), 2, 3))
    flips = np.zeros(len(views), bool)
    for k, name in enumerate(views):
        A, flip = _view_affine(win.box, spec.size, aug, rng)
        affines[k], flips[k] = A, flip
        if name == ALL:
            x = event_input(events, A, spec, win.width, win.height, win.t_end)
        else:
            one = replace(spec, representations=(name,))
            x = empty_event_input(spec)
            x[slices[name]] = event_input(events, A, one, win.width, win.height, win.t_end)
        if flip:
            x = x[:, :, ::-1]
        out[k] = _photometric(x, spec, aug, rng)
    return out, affines, flips


def _augment_events(win: Window, aug: ViewAugment, rng: np.random.Generator) -> np.ndarray:
    """Drop a fraction of the events and add uniform noise events in the box region."""
    ev = win.events
    if ev.size == 0:
        return ev
    ev = ev[rng.random(ev.size) >= rng.uniform(0, aug.event_drop_max)]
    n_noise = int(rng.uniform(0, aug.event_noise_max) * win.events.size)
    if n_noise == 0:
        return ev
    half = win.box.side
    noise = np.empty(n_noise, EVENT_DTYPE)
    noise["t"] = rng.integers(win.t_end - 1 - int(np.ptp(win.events["t"])), win.t_end, n_noise)
    x0, y0 = max(0, int(win.box.cx - half)), max(0, int(win.box.cy - half))
    x1 = min(win.width, int(win.box.cx + half) + 1)
    y1 = min(win.height, int(win.box.cy + half) + 1)
    noise["x"] = rng.integers(x0, max(x0 + 1, x1), n_noise)
    noise["y"] = rng.integers(y0, max(y0 + 1, y1), n_noise)
    noise["p"] = rng.integers(0, 2, n_noise)
    out = concat_events([ev, noise])
    return out[np.argsort(out["t"], kind="stable")]


def _view_affine(
    box: Box, size: int, aug: ViewAugment, rng: np.random.Generator
) -> tuple[np.ndarray, bool]:
    """A random resized crop of ``box``: ``(A, flip)``."""
    side = box.side * float(np.exp(rng.uniform(-aug.scale, aug.scale)))
    cx = box.cx + rng.normal(0, aug.shift) * box.side
    cy = box.cy + rng.normal(0, aug.shift) * box.side
    A = crop_affine(Box(cx, cy, side), size, rng.uniform(-aug.rotation_deg, aug.rotation_deg))
    return A, bool(rng.random() < aug.flip_prob)


def _photometric(
    x: np.ndarray, spec: InputSpec, aug: ViewAugment, rng: np.random.Generator
) -> np.ndarray:
    """Contrast gain around each channel's neutral value, then maybe a blur."""
    neutral = np.zeros((spec.event_channels, 1, 1), np.float32)
    if "event_frame" in spec.representations:
        neutral[channel_slices(spec)["event_frame"]] = 0.5
    x = neutral + (x - neutral) * rng.uniform(1 / aug.gain, aug.gain)
    if rng.random() < aug.blur_prob:
        sigma = rng.uniform(0.3, 1.2)
        x = np.stack([cv2.GaussianBlur(c, (0, 0), sigma) for c in x])
    return np.ascontiguousarray(x, dtype=np.float32)
