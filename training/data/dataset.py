"""Training samples from ground-truth bags: event window + RGB frame + landmarks, cropped.

Every sample goes through the runtime's own preprocessing (:mod:`facealign_ros.face.crop`,
:mod:`facealign_ros.face.preprocess`), with the face box taken from the ground truth and jittered
(as the tracker's box would be). Two kinds of samples:

* *frame* samples at every RGB frame: events of the window ending at the image stamp + that image;
* *high-rate* samples at ground-truth times between frames (1 kHz topic): events of the window
  ending there + the latest earlier image (stale RGB, as the node's events mode reuses it).

Beside them, optional *empty-scene* samples from recordings without a person (``negative_bags``:
an empty seat, the cabin without its driver): at every RGB frame (a 30 Hz grid in a recording
without RGB) with a full event window before it, a crop the node's face search
would look at (one of its grid candidates, :func:`~facealign_ros.tracking.candidate_boxes`, or a
face-sized box anywhere), ``face_present`` False. Negative crops drawn inside face recordings
(``negative_prob``) never cover the place behind the face; these do.

Items are dicts (see :data:`SAMPLE_KEYS`). Augmentation is deterministic: sample ``i`` of epoch
``e`` uses ``np.random.default_rng((seed, e, i))``; call :meth:`BagWindowDataset.set_epoch`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np

from facealign_ros.events import EVENT_DTYPE, concat_events
from facealign_ros.face.crop import (
    Box,
    box_from_landmarks,
    crop_affine,
    to_normalized,
    transform_points,
)
from facealign_ros.face.landmarks import REP155_70
from facealign_ros.face.pose import matrix_to_euler
from facealign_ros.face.preprocess import InputSpec, event_input, rgb_input
from facealign_ros.pipeline.config import PipelineConfig
from facealign_ros.tracking import activity_map, candidate_boxes
from training.data.bag_arrays import BagArrays
from training.data.low_light import reexpose

SAMPLE_KEYS = ("events", "rgb", "rgb_present", "event_present", "landmarks", "visible",
               "pose_deg", "light", "motion", "A", "stamp_ns", "face_present")  # fmt: skip


_AUGMENT_RANGES = (  # (field, low, high) of the numeric augmentation settings
    ("box_scale_jitter", 0.0, 0.9), ("box_shift", 0.0, 1.0), ("rotation_deg", 0.0, 180.0),
    ("flip_prob", 0.0, 1.0), ("event_drop_max", 0.0, 1.0), ("event_noise_max", 0.0, 10.0),
    ("rgb_gain", 1.0, 100.0), ("rgb_gamma", 1.0, 100.0), ("rgb_noise_max", 0.0, 1.0),
    ("rgb_blur_prob", 0.0, 1.0), ("rgb_white_balance", 0.0, 0.9), ("rgb_saturation", 0.0, 1.0),
    ("rgb_gray_prob", 0.0, 1.0), ("negative_prob", 0.0, 1.0),
)  # fmt: skip


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (all off with ``enabled=False``).

    Attributes:
        enabled: apply augmentation.
        box_scale_jitter: box side multiplied by ``U(1 - j, 1 + j)``.
        box_shift: box centre shifted by ``N(0, s * side)`` per axis.
        rotation_deg: crop rotated by ``U(-r, r)``.
        flip_prob: probability of a horizontal mirror (landmark indices re-ordered).
        event_drop_max: a fraction ``U(0, d)`` of the window's events is removed.
        event_noise_max: uniform noise events, up to this fraction of the window's events.
        rgb_gain: brightness multiplied by ``U(1/g, g)``.
        rgb_gamma: gamma ``U(1/g, g)`` applied after the gain (1: none).
        rgb_noise_max: Gaussian noise std up to this value (in [0, 1] units).
        rgb_blur_prob: probability of a Gaussian blur (motion / focus).
        rgb_white_balance: per-channel gains ``U(1 - w, 1 + w)`` (camera white balance).
        rgb_saturation: colour saturation scaled by ``U(1 - s, 1 + s)`` around the grey level.
        rgb_gray_prob: probability of a grey-level image (monochrome cameras, old photos).
        rgb_low_light_prob: probability that the crop is re-exposed as a photon-limited
            camera frame (:func:`training.data.low_light.reexpose`: shot and read noise at a
            mean signal drawn log-uniformly from ``rgb_low_light_electrons`` electrons per
            pixel), so the network meets RGB as poor as a small-pixel camera's in the dark
            and learns to lean on the events. 0 (default) draws nothing.
        rgb_low_light_electrons: ``(low, high)`` electrons per pixel of that re-exposure.
        negative_prob: probability that a sample is a *negative* crop: a box of face-like size
            elsewhere in the view (IoU with the face box < 0.1), ``face_present`` False; the loss
            then asks for zero confidence (teaches the face search to reject background).
    """

    enabled: bool = True
    box_scale_jitter: float = 0.15
    box_shift: float = 0.06
    rotation_deg: float = 20.0
    flip_prob: float = 0.5
    event_drop_max: float = 0.4
    event_noise_max: float = 0.2
    rgb_gain: float = 1.6
    rgb_gamma: float = 1.4
    rgb_noise_max: float = 0.04
    rgb_blur_prob: float = 0.2
    rgb_white_balance: float = 0.1
    rgb_saturation: float = 0.4
    rgb_gray_prob: float = 0.1
    rgb_low_light_prob: float = 0.0
    rgb_low_light_electrons: tuple[float, float] = (1.0, 30.0)
    negative_prob: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.rgb_low_light_electrons)
        if not 0 < lo <= hi:
            raise ValueError(
                f"AugmentConfig: rgb_low_light_electrons {lo, hi}: need 0 < low <= high"
            )
        if not 0 <= self.rgb_low_light_prob <= 1:
            raise ValueError("AugmentConfig: rgb_low_light_prob must be in [0, 1]")
        object.__setattr__(self, "rgb_low_light_electrons", (lo, hi))
        for name, low, high in _AUGMENT_RANGES:  # NaN fails every comparison
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and low <= value <= high):
                raise ValueError(f"augment.{name} must be in [{low}, {high}], got {value!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentConfig:
        """Build from a dict; unknown keys are an error."""
        if unknown := sorted(set(d) - {f.name for f in fields(cls)}):
            raise ValueError(f"AugmentConfig: unknown keys {unknown}")
        return cls(**d)


class BagWindowDataset:
    """Cropped samples over several :class:`BagArrays` (a torch-style map dataset).

    Args:
        bags: decoded recordings.
        spec: the model's input specification.
        augment: augmentation settings (use ``AugmentConfig(enabled=False)`` for evaluation).
        seed: base seed of the per-sample random generators.
        hf_per_frame: high-rate samples per frame interval (0: frame samples only).
        use_rgb: False gives samples without RGB.
        negative_bags: recordings without a person (no ground truth needed): empty-scene
            negative samples at each of their RGB frames (module docstring).
        negative_repeat: each empty-scene frame is sampled this many times per epoch (other
            crops each time), to weigh a few empty recordings against many face recordings.
        search: the node settings whose grid search the empty-scene crops imitate
            (``min_face_px``, ``detect_candidates``; default: the node's defaults).
    """

    def __init__(
        self,
        bags: list[BagArrays],
        spec: InputSpec,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        hf_per_frame: int = 0,
        use_rgb: bool = True,
        negative_bags: list[BagArrays] | tuple[BagArrays, ...] = (),
        negative_repeat: int = 1,
        search: PipelineConfig | None = None,
    ) -> None:
        if negative_repeat < 1:
            raise ValueError(f"negative_repeat must be >= 1, got {negative_repeat}")
        self.search = search or PipelineConfig()
        self.bags = list(bags) + list(negative_bags)
        self.use_rgb = bool(use_rgb)
        self.spec = spec
        self.augment = augment or AugmentConfig(enabled=False)
        self.seed = int(seed)
        self.epoch = 0
        # (bag, kind, row): kind 0 = frame sample (gt row), 1 = high-rate (hf row),
        # 2 = empty-scene sample (frame row)
        index = []
        frameless = [bag.name for bag in bags if bag.frame_stamps.size == 0]
        if frameless:  # samples are taken at the RGB frames' ground truth
            raise ValueError(
                f"recordings without RGB frames cannot give training samples: {frameless} "
                "(samples are taken at the frames' ground truth; record the RGB topic too)"
            )
        for b, bag in enumerate(bags):
            rows = np.nonzero(bag.gt_stamps >= bag.frame_stamps[0])[0]
            index += [(b, 0, int(r)) for r in rows]
            valid = np.nonzero(bag.hf_stamps > bag.frame_stamps[0])[0]
            n = min(valid.size, hf_per_frame * rows.size)
            if n:
                pick = np.linspace(0, valid.size - 1, n).round().astype(int)
                index += [(b, 1, int(valid[p])) for p in pick]
        self._empty_times: dict[int, np.ndarray] = {}
        for b, bag in enumerate(negative_bags, start=len(bags)):
            if bag.gt_stamps.size or bag.hf_stamps.size:
                raise ValueError(
                    f"negative recording {bag.name!r} has face ground truth: a recording with a "
                    "person is not an empty scene"
                )
            times = _empty_scene_times(bag, spec.window_ns)
            if times.size == 0:
                raise ValueError(f"negative recording {bag.name!r}: no full event window")
            self._empty_times[b] = times
            index += [(b, 2, r) for r in range(times.size)] * negative_repeat
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def representations(self) -> tuple[str, ...]:
        """Event representations of the inputs (checkpoint metadata)."""
        return self.spec.representations

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The :class:`InputSpec` as a dict (checkpoint metadata; the runtime rebuilds it)."""
        return self.spec.to_dict()

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> dict[str, Any]:
        b, kind, row = self.index[i]
        bag = self.bags[b]
        rng = np.random.default_rng((self.seed, self.epoch, int(i)))
        aug = self.augment
        if kind == 2:
            return self._empty_scene(b, row, rng)
        if kind == 0:
            t = int(bag.gt_stamps[row])
            pts, vis = np.asarray(bag.gt_points[row], np.float64), bag.gt_visible[row]
        else:
            t = int(bag.hf_stamps[row])
            pts, vis = np.asarray(bag.hf_points[row], np.float64), bag.hf_visible[row]
        vis = np.asarray(vis, np.float32).copy()
        A, flip = self._affine(pts, vis, rng)
        negative = aug.enabled and aug.negative_prob > 0 and rng.random() < aug.negative_prob
        if negative:
            A_neg = self._negative_affine(pts, vis, bag.width, bag.height, rng)
            negative = A_neg is not None
            A = A_neg if A_neg is not None else A
        frame = self._frame_at(bag, t)
        events = bag.events_between(t - self.spec.window_ns, t)
        ev, rgb = self._inputs(bag, t, events, frame, A, rng)
        lm = to_normalized(transform_points(pts, A), self.spec.size)
        if flip:
            lm, vis = lm[REP155_70.flip], vis[REP155_70.flip]
        return {
            "events": ev,
            "rgb": rgb,
            "rgb_present": frame is not None,
            "event_present": True,
            "landmarks": lm.astype(np.float32),
            "visible": vis,
            "pose_deg": self._pose(bag, t, flip),
            "light": bag.light,
            "motion": bag.motion,
            "A": A,
            "stamp_ns": np.int64(t),
            "face_present": not negative,
        }

    def _affine(
        self, pts: np.ndarray, vis: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, bool]:
        """Crop affine from the ground truth (jittered and maybe mirrored in training)."""
        box = box_from_landmarks(pts, vis, self.spec.box_scale)
        aug, angle, flip = self.augment, 0.0, False
        if aug.enabled:
            side = box.side * rng.uniform(1 - aug.box_scale_jitter, 1 + aug.box_scale_jitter)
            cx, cy = box.cx + rng.normal(0, aug.box_shift) * box.side, box.cy
            cy += rng.normal(0, aug.box_shift) * box.side
            box = type(box)(cx, cy, side)
            angle = rng.uniform(-aug.rotation_deg, aug.rotation_deg)
            flip = bool(rng.random() < aug.flip_prob)
        A = crop_affine(box, self.spec.size, angle)
        return (_mirrored(A, self.spec.size) if flip else A), flip

    def _negative_affine(
        self, pts: np.ndarray, vis: np.ndarray, width: int, height: int, rng: np.random.Generator
    ) -> np.ndarray | None:
        """A crop of face-like size away from the face (IoU < 0.1); None if none fits."""
        face = box_from_landmarks(pts, vis, self.spec.box_scale)
        short = float(min(width, height))
        for _ in range(20):
            side = min(face.side * float(np.exp(rng.uniform(-0.4, 0.7))), short)
            cx = rng.uniform(side / 2, max(side / 2, width - side / 2))
            cy = rng.uniform(side / 2, max(side / 2, height - side / 2))
            if _iou(face, cx, cy, side) < 0.1:
                return crop_affine(type(face)(cx, cy, side), self.spec.size, 0.0)
        return None

    def _frame_at(self, bag: BagArrays, t: int) -> np.ndarray | None:
        """The latest RGB frame at or before ``t`` (None without one, or with ``use_rgb`` off)."""
        fi = int(np.searchsorted(bag.frame_stamps, t, side="right")) - 1
        return bag.frames[fi] if self.use_rgb and fi >= 0 else None

    def _inputs(
        self,
        bag: BagArrays,
        t: int,
        events: np.ndarray,
        frame: np.ndarray | None,
        A: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs ``(events, rgb)`` of the crop ``A``, augmented in training.

        ``events`` is the window ending at ``t``; ``frame`` None gives a zero RGB input. The
        event augmentation draws from ``rng`` before the RGB one.
        """
        aug = self.augment
        if aug.enabled:
            events = _augment_events(events, bag.width, bag.height, rng, aug)
        ev = event_input(events, A, self.spec, bag.width, bag.height, t)
        if frame is None:
            return ev, np.zeros((3, self.spec.size, self.spec.size), np.float32)
        rgb = rgb_input(frame, A, self.spec)
        return ev, (_augment_rgb(rgb, rng, aug) if aug.enabled else rgb)

    def _empty_scene(self, b: int, row: int, rng: np.random.Generator) -> dict[str, Any]:
        """A negative sample of recording ``b`` (without a person) at its sample time ``row``."""
        bag = self.bags[b]
        t = int(self._empty_times[b][row])
        events = bag.events_between(t - self.spec.window_ns, t)
        frame = self._frame_at(bag, t)
        aug = self.augment
        short = float(min(bag.width, bag.height))
        if rng.random() < 0.5:  # a box the node's grid search scores
            act = activity_map(events, frame, bag.width, bag.height)
            c = self.search
            boxes = candidate_boxes(bag.width, bag.height, act, c.min_face_px, c.detect_candidates)
            box = boxes[int(rng.integers(len(boxes)))]
            side = box.side * float(np.exp(rng.uniform(-0.15, 0.15)))
            cx = box.cx + rng.normal(0, 0.06) * box.side
            cy = box.cy + rng.normal(0, 0.06) * box.side
        else:  # a face-sized box anywhere (where a refined search box may land)
            side = short * float(np.exp(rng.uniform(np.log(0.2), np.log(0.95))))
            cx = rng.uniform(side / 2, max(side / 2, bag.width - side / 2))
            cy = rng.uniform(side / 2, max(side / 2, bag.height - side / 2))
        angle = rng.uniform(-aug.rotation_deg, aug.rotation_deg) if aug.enabled else 0.0
        A = crop_affine(Box(cx, cy, max(side, 1.0)), self.spec.size, angle)
        if aug.enabled and rng.random() < aug.flip_prob:
            A = _mirrored(A, self.spec.size)
        ev, rgb = self._inputs(bag, t, events, frame, A, rng)
        n = REP155_70.n_points
        return {
            "events": ev,
            "rgb": rgb,
            "rgb_present": frame is not None,
            "event_present": True,
            "landmarks": np.zeros((n, 2), np.float32),
            "visible": np.zeros(n, np.float32),
            "pose_deg": np.full(3, np.nan, np.float32),
            "light": bag.light,
            "motion": bag.motion,
            "A": A,
            "stamp_ns": np.int64(t),
            "face_present": False,
        }

    @staticmethod
    def _pose(bag: BagArrays, t: int, flip: bool) -> np.ndarray:
        """Ground-truth yaw/pitch/roll (degrees) at ``t``; NaN when unknown.

        A mirrored crop shows the mirrored head: yaw and roll change sign.
        """
        if bag.pose_stamps.size == 0:
            return np.full(3, np.nan, np.float32)
        j = int(np.argmin(np.abs(bag.pose_stamps - t)))
        if abs(int(bag.pose_stamps[j]) - t) > 20_000_000:
            return np.full(3, np.nan, np.float32)
        ypr = np.degrees(matrix_to_euler(bag.pose_rot[j]))
        if flip:
            ypr *= [-1, 1, -1]
        return ypr.astype(np.float32)


def _mirrored(A: np.ndarray, size: int) -> np.ndarray:
    """The crop affine ``A`` followed by a horizontal mirror of the crop: ``x' = S - 1 - x``."""
    return np.array([[-1.0, 0, size - 1], [0, 1.0, 0]]) @ np.vstack([A, [0, 0, 1]])


EMPTY_SCENE_RATE_HZ = 30.0
"""Sample rate of a recording without RGB frames used for empty-scene samples."""


def _empty_scene_times(bag: BagArrays, window_ns: int) -> np.ndarray:
    """Sample times (ROS ns) of an empty-scene recording.

    Its RGB frames (a 30 Hz grid without RGB) that have a full event window before them and are
    no later than its last event.
    """
    if bag.events.size == 0:
        return np.zeros(0, np.int64)
    first = int(bag.events["t"][0]) + window_ns
    last = int(bag.events["t"][-1])
    if bag.frame_stamps.size:
        t = np.asarray(bag.frame_stamps, np.int64)
        return t[(t >= first) & (t <= last)]
    return np.arange(first, last + 1, int(1e9 / EMPTY_SCENE_RATE_HZ), dtype=np.int64)


def _iou(box: Box, cx: float, cy: float, side: float) -> float:
    """IoU of two squares: ``box`` and the one centred at ``(cx, cy)`` with side ``side``."""
    b = box
    w = max(0.0, min(b.cx + b.side / 2, cx + side / 2) - max(b.cx - b.side / 2, cx - side / 2))
    h = max(0.0, min(b.cy + b.side / 2, cy + side / 2) - max(b.cy - b.side / 2, cy - side / 2))
    inter = w * h
    return inter / (b.side**2 + side**2 - inter)


def _augment_events(
    events: np.ndarray, width: int, height: int, rng: np.random.Generator, aug: AugmentConfig
) -> np.ndarray:
    """Drop a random fraction of the events and add uniform noise events (time-sorted)."""
    n = events.size
    if n == 0:
        return events
    keep = rng.random(n) >= rng.uniform(0, aug.event_drop_max)
    ev = events[keep]
    n_noise = int(rng.uniform(0, aug.event_noise_max) * n)
    if n_noise:
        noise = np.empty(n_noise, EVENT_DTYPE)
        noise["t"] = rng.integers(int(events["t"][0]), int(events["t"][-1]) + 1, n_noise)
        noise["x"] = rng.integers(0, width, n_noise)
        noise["y"] = rng.integers(0, height, n_noise)
        noise["p"] = rng.integers(0, 2, n_noise)
        ev = concat_events([ev, noise])
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev


def _augment_rgb(rgb: np.ndarray, rng: np.random.Generator, aug: AugmentConfig) -> np.ndarray:
    """Colour, gain, gamma, blur and noise on a ``(3, S, S)`` image in ``[0, 1]``."""
    # The colour steps draw nothing when switched off (0), so settings without them replay the
    # random stream of the recipes made before they existed.
    out = rgb
    if (w := aug.rgb_white_balance) > 0:
        out = out * rng.uniform(1 - w, 1 + w, (3, 1, 1))
    gray_level = aug.rgb_gray_prob > 0 and rng.random() < aug.rgb_gray_prob
    if gray_level or aug.rgb_saturation > 0:
        s = aug.rgb_saturation
        sat = 0.0 if gray_level else rng.uniform(1 - s, 1 + s)
        gray = out.mean(0, keepdims=True)
        out = gray + sat * (out - gray)
    out = out * rng.uniform(1 / aug.rgb_gain, aug.rgb_gain)
    out = np.clip(out, 0, 1) ** rng.uniform(1 / aug.rgb_gamma, aug.rgb_gamma)
    if rng.random() < aug.rgb_blur_prob:
        sigma = rng.uniform(0.5, 2.0)
        out = np.stack([cv2.GaussianBlur(c, (0, 0), sigma) for c in out])
    out = out + rng.normal(0, rng.uniform(0, aug.rgb_noise_max), out.shape)
    out = np.clip(out, 0, 1).astype(np.float32)
    if aug.rgb_low_light_prob > 0 and rng.random() < aug.rgb_low_light_prob:
        lo, hi = np.log(aug.rgb_low_light_electrons)
        out = reexpose(out, float(np.exp(rng.uniform(lo, hi))), rng)
    return out
