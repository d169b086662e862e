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
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import cv2
import numpy as np

from facealign_ros.events import EVENT_DTYPE, concat_events
from facealign_ros.face.crop import Box, crop_affine
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
    events = _augment_events(win, aug, rng)
    slices = channel_slices(spec)
    out = np.empty((len(views), spec.event_channels, spec.size, spec.size), np.float32)
    for k, name in enumerate(views):
        A, flip = _view_affine(win.box, spec.size, aug, rng)
        if name == ALL:
            x = event_input(events, A, spec, win.width, win.height, win.t_end)
        else:
            one = replace(spec, representations=(name,))
            x = empty_event_input(spec)
            x[slices[name]] = event_input(events, A, one, win.width, win.height, win.t_end)
        if flip:
            x = x[:, :, ::-1]
        out[k] = _photometric(x, spec, aug, rng)
    return out


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
