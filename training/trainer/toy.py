"""Toy faces: a tiny deterministic in-memory dataset that follows the training sample contract.

A 3D landmark template (iBUG 68 order, optionally with REP-155 pupils) is rotated by a random
yaw/pitch/roll, scaled, shifted and projected orthographically into the crop; RGB and event
channels are Gaussian blobs drawn at the landmarks, so a network can learn to find them:

- RGB: a grey background, a skin-coloured face polygon and dark blobs, motion-blurred along the
  sample's image motion; ``light`` scales the contrast (1, 0.3, 0.06) and raises the noise, so
  RGB becomes nearly useless in the dark.
- Events: channel k holds blobs shifted by ``(k / (C-1) - 1/2) * motion`` (like time bins of a
  voxel grid) plus salt noise; ``motion`` 1 (fast) moves 4x further than 0 (slow).

Every sample is a pure function of ``(seed, split, index)``; on the train split the pixel noise
is re-drawn per epoch from ``(seed, split, index, epoch)`` (call :meth:`ToyFaces.set_epoch`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from facealign_ros.face.landmarks import LandmarkScheme, get_scheme

SPLITS = {"train": 0, "val": 1, "test": 2}
LIGHT_GAIN = (1.0, 0.3, 0.06)
LIGHT_NOISE = (0.01, 0.04, 0.08)
FRAME_NS = 33_333_333


def _ring(cx: float, cy: float, rx: float, ry: float, n: int) -> np.ndarray:
    a = math.pi + np.arange(n) * 2.0 * math.pi / n  # start at the image-left point, go over the top
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def toy_template_3d(scheme: str = "ibug68") -> np.ndarray:
    """A frontal 3D face template, (N, 3) float64: x right, y down, z towards the camera.

    Units are crop widths, centred between the eyes and the mouth; the face is about 0.76 wide.

    Args:
        scheme: ``"ibug68"`` or ``"rep155_70"`` (adds the two pupils).

    Raises:
        ValueError: For other schemes.
    """
    if scheme not in ("ibug68", "rep155_70"):
        raise ValueError(f"toy faces support ibug68 and rep155_70, not {scheme!r}")
    t = math.pi - np.arange(17) * math.pi / 16
    jaw = np.stack([0.38 * np.cos(t), -0.05 + 0.42 * np.sin(t), -0.25 * (1 - np.sin(t))], axis=1)
    k = np.arange(5)
    brow_x = -0.30 + k * 0.055
    brow_y = -0.17 - 0.04 * np.sin(math.pi * k / 4)
    brow_r = np.stack([brow_x, brow_y, np.full(5, 0.03)], axis=1)
    brow_l = brow_r[::-1] * np.array([-1.0, 1.0, 1.0])
    j = np.arange(4)
    bridge = np.stack([np.zeros(4), -0.08 + j * 0.05, 0.05 + j * 0.04], axis=1)
    bump = 1.0 - np.abs(k - 2) / 2
    nostrils = np.stack([-0.08 + k * 0.04, 0.11 + 0.02 * bump, 0.08 + 0.03 * bump], axis=1)
    eye_r = np.column_stack([_ring(-0.19, -0.08, 0.07, 0.03, 6), np.full(6, 0.02)])
    eye_l = np.column_stack([_ring(0.19, -0.08, 0.07, 0.03, 6), np.full(6, 0.02)])
    mouth_o = np.column_stack([_ring(0.0, 0.21, 0.12, 0.05, 12), np.full(12, 0.06)])
    mouth_i = np.column_stack([_ring(0.0, 0.21, 0.08, 0.025, 8), np.full(8, 0.06)])
    parts = [jaw, brow_r, brow_l, bridge, nostrils, eye_r, eye_l, mouth_o, mouth_i]
    if scheme == "rep155_70":
        parts.append(np.array([[-0.19, -0.08, 0.03], [0.19, -0.08, 0.03]]))
    return np.concatenate(parts, axis=0)


def rotation_ypr(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Rz(roll) @ Ry(yaw) @ Rx(pitch)`` from angles in degrees (toy convention), (3, 3)."""
    y, p, r = np.deg2rad([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def ypr_from_rotation(rot: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotation_ypr`: (yaw, pitch, roll) in degrees."""
    yaw = math.asin(float(np.clip(-rot[2, 0], -1.0, 1.0)))
    pitch = math.atan2(rot[2, 1], rot[2, 2])
    roll = math.atan2(rot[1, 0], rot[0, 0])
    return np.rad2deg([yaw, pitch, roll])


def toy_pose_from_landmarks(landmarks: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """Orthographic PnP against the toy template: (M, N, 2) landmarks -> (M, 3) degrees.

    Fits a 2x3 linear map from the centred template to the centred landmarks (any unit) by
    least squares, orthonormalises its rows into a rotation and reads yaw, pitch, roll off it.
    """
    tmpl = toy_template_3d(scheme.name)
    tc = tmpl - tmpl.mean(axis=0)
    out = np.full((len(landmarks), 3), np.nan)
    for i, pts in enumerate(np.asarray(landmarks, dtype=np.float64)):
        m = np.linalg.lstsq(tc, pts - pts.mean(axis=0), rcond=None)[0].T  # (2, 3)
        u, _, vt = np.linalg.svd(m, full_matrices=False)
        r12 = u @ vt  # nearest matrix with orthonormal rows
        rot = np.vstack([r12, np.cross(r12[0], r12[1])])
        out[i] = ypr_from_rotation(rot)
    return out


def gaussian_blobs(points_px: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Sum of unit Gaussian blobs at (K, 2) pixel positions, (size, size) float32."""
    grid = np.arange(size, dtype=np.float32)
    inv = np.float32(-0.5 / sigma**2)
    # clamp the exponent: denormal results make exp and the product below ~100x slower
    gx = np.exp(np.maximum(inv * (grid[None, :] - points_px[:, :1].astype(np.float32)) ** 2, -20))
    gy = np.exp(np.maximum(inv * (grid[None, :] - points_px[:, 1:].astype(np.float32)) ** 2, -20))
    gx[gx < 1e-6] = 0.0
    gy[gy < 1e-6] = 0.0
    # einsum without BLAS: no thread pool (which stalls on a busy machine), same bits everywhere
    return np.einsum("ki,kj->ij", gy, gx, optimize=False)


@dataclass(frozen=True)
class ToyConfig:
    """Options of the toy dataset (``data.options`` of a ``kind: toy`` config).

    Attributes:
        num_samples: Samples of the train split.
        eval_samples: Samples of the val and test splits.
        size: Crop side S in pixels.
        scheme: ``"ibug68"`` or ``"rep155_70"``.
        event_channels: Event channels C.
        light_probs: Probabilities of normal, low and dark light.
        p_fast: Probability of fast motion.
        max_yaw: Yaw range +- in degrees (likewise ``max_pitch``, ``max_roll``).
        max_pitch: Pitch range in degrees.
        max_roll: Roll range in degrees.
        scale_range: Range of the face scale.
        max_shift: Range of the face centre shift in crop widths.
        p_rgb_missing: Probability that a sample has no RGB frame (``rgb_present`` False).
        augment: Re-draw the pixel noise of train samples every epoch.
    """

    num_samples: int = 256
    eval_samples: int = 64
    size: int = 64
    scheme: str = "ibug68"
    event_channels: int = 3
    light_probs: tuple[float, ...] = (0.5, 0.25, 0.25)
    p_fast: float = 0.5
    max_yaw: float = 30.0
    max_pitch: float = 15.0
    max_roll: float = 20.0
    scale_range: tuple[float, ...] = (0.75, 1.0)
    max_shift: float = 0.06
    p_rgb_missing: float = 0.0
    augment: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "light_probs", tuple(float(p) for p in self.light_probs))
        object.__setattr__(self, "scale_range", tuple(float(s) for s in self.scale_range))
        if self.num_samples < 1 or self.eval_samples < 1 or self.size < 16:
            raise ValueError("toy: num_samples, eval_samples >= 1 and size >= 16 required")
        if len(self.light_probs) != 3 or abs(sum(self.light_probs) - 1.0) > 1e-6:
            raise ValueError("toy: light_probs needs 3 probabilities summing to 1")
        if len(self.scale_range) != 2 or self.event_channels < 1:
            raise ValueError("toy: scale_range needs 2 values and event_channels >= 1")
        toy_template_3d(self.scheme)  # validates the scheme

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToyConfig:
        """Build from a mapping, rejecting unknown keys (``kind`` is ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        opts = {k: v for k, v in data.items() if k != "kind"}
        if unknown := sorted(set(opts) - known):
            raise ValueError(f"unknown toy data options {unknown}; known: {sorted(known)}")
        return cls(**opts)


class ToyFaces(Dataset):
    """The toy dataset of one split (see the module docstring).

    Args:
        config: Options.
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint random streams).
        seed: Base seed.
    """

    representations: tuple[str, ...] = ("toy_blobs",)

    def __init__(self, config: ToyConfig, split: str = "train", seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {sorted(SPLITS)}")
        self.config = config
        self.split = split
        self.seed = int(seed)
        self.epoch = 0
        self.scheme = get_scheme(config.scheme)
        self.template = toy_template_3d(config.scheme)
        self.landmark_scheme = config.scheme
        self.preprocessing = {"toy": dataclasses.asdict(config)}

    def __len__(self) -> int:
        return self.config.num_samples if self.split == "train" else self.config.eval_samples

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose pixel noise train samples draw."""
        self.epoch = int(epoch)

    def pose_fn(
        self, points_px: np.ndarray, scheme: LandmarkScheme, K: np.ndarray | None = None
    ) -> np.ndarray:
        """Head pose from (M, N, 2) sensor-pixel landmarks (orthographic: ``K`` is unused)."""
        return toy_pose_from_landmarks(points_px, scheme)

    def mean_shape(self) -> np.ndarray:
        """(N, 2) mean of the train split's landmarks (first 256 samples), float32."""
        train = ToyFaces(self.config, "train", self.seed)
        n = min(len(train), 256)
        return np.mean([train.geometry(i)[0] for i in range(n)], axis=0).astype(np.float32)

    def geometry(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Landmarks (N, 2) in [0, 1] and the drawn attributes of sample ``index``."""
        c = self.config
        rng = np.random.default_rng([self.seed, SPLITS[self.split], int(index)])
        ypr = rng.uniform(-1, 1, 3) * np.array([c.max_yaw, c.max_pitch, c.max_roll])
        scale = rng.uniform(*c.scale_range)
        shift = rng.uniform(-c.max_shift, c.max_shift, 2)
        light = int(rng.choice(3, p=np.asarray(c.light_probs)))
        fast = int(rng.random() < c.p_fast)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        speed = (rng.uniform(3.0, 6.0) if fast else rng.uniform(0.5, 1.5)) * c.size / 64
        rot = rotation_ypr(*ypr)
        pts = (self.template @ rot.T)[:, :2] * scale + 0.5 + shift
        attrs = {
            "pose_deg": ypr,
            "light": light,
            "motion": fast,
            "velocity_px": speed * np.array([math.cos(angle), math.sin(angle)]),
            "background": rng.uniform(0.3, 0.7),
            "rgb_present": bool(rng.random() >= c.p_rgb_missing),
        }
        return pts, attrs

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        c, s = self.config, self.config.size
        pts, at = self.geometry(index)
        key = [self.seed, SPLITS[self.split], int(index)]
        if self.split == "train" and c.augment:
            key.append(self.epoch + 1)
        rng = np.random.default_rng([*key, 7])
        px = pts * s - 0.5
        sigma = 1.2 * s / 64
        vel = at["velocity_px"]
        # RGB: background, face polygon, dark blobs, motion blur, light level, noise.
        face = np.zeros((s, s), np.float32)
        hull = cv2.convexHull(np.round(px * 16).astype(np.int32))
        cv2.fillConvexPoly(face, hull, 1.0, lineType=cv2.LINE_AA, shift=4)
        taps = np.linspace(-0.5, 0.5, 5)
        blobs = np.mean([gaussian_blobs(px + t * vel, s, sigma) for t in taps], axis=0)
        skin = np.array([0.85, 0.65, 0.55], np.float32)[:, None, None]
        rgb = at["background"] * (1 - face) + skin * face - 0.6 * np.minimum(blobs, 1.0)
        rgb = rgb * LIGHT_GAIN[at["light"]]
        rgb = rgb + rng.normal(0.0, LIGHT_NOISE[at["light"]], rgb.shape)
        # Events: blobs along the motion path, one time bin per channel, plus salt noise.
        ch = c.event_channels
        offsets = np.linspace(-0.5, 0.5, ch) if ch > 1 else np.zeros(1)
        events = np.stack(
            [np.minimum(gaussian_blobs(px + o * vel, s, sigma), 1.0) for o in offsets]
        )
        salt = rng.random(events.shape) < 0.01 * (1 + at["light"])
        events = events + 0.5 * salt
        rgb_present = at["rgb_present"]
        return {
            "events": events.astype(np.float32),
            "rgb": np.clip(rgb, 0.0, 1.0).astype(np.float32) * np.float32(rgb_present),
            "rgb_present": rgb_present,
            "event_present": True,
            "landmarks": pts.astype(np.float32),
            "visible": np.ones(len(pts), np.float32),
            "pose_deg": at["pose_deg"].astype(np.float32),
            "light": at["light"],
            "motion": at["motion"],
            "A": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
            "stamp_ns": np.int64(index * FRAME_NS),
        }


def build_toy(options: Mapping[str, Any], split: str, seed: int) -> ToyFaces:
    """Toy dataset from ``data.options`` (unknown keys raise ValueError)."""
    return ToyFaces(ToyConfig.from_dict(options), split, seed)
