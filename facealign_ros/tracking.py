"""Face tracking state, search candidates and One-Euro smoothing (pure numpy, no ROS, no torch).

The pipeline finds a face by scoring a few candidate crops with the alignment network itself
(:func:`candidate_boxes` ranks crops by event or texture activity; :func:`plausibility` checks
that the predicted landmarks fill the crop as in training), then tracks it from its last
landmarks (:meth:`FaceTracker.box`). A face is dropped after ``lost_after`` consecutive frames of
low confidence; the next face gets a new id (REP-155 ids are not re-identified).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from facealign_ros.face.crop import Box, box_from_landmarks
from facealign_ros.face.pose import HeadPose


class OneEuroFilter:
    """One-Euro filter (Casiez et al., CHI 2012) on arrays, with time stamps in ns.

    The cut-off frequency grows with the signal speed: ``fc = min_cutoff + beta * |dx/dt|``,
    so slow motion is smoothed strongly and fast motion follows with little lag.

    Args:
        min_cutoff: minimum cut-off frequency, Hz.
        beta: speed coefficient (per unit of ``scale`` per second).
        d_cutoff: cut-off of the derivative filter, Hz.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: int | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        r = 2 * math.pi * cutoff * dt
        return r / (r + 1)

    def reset(self) -> None:
        """Forget the state; the next sample passes unchanged."""
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t_ns: int, scale: float = 1.0) -> np.ndarray:
        """Filter one sample ``x`` taken at ``t_ns``; ``scale`` normalises the speed (px)."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or t_ns <= self._t or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), int(t_ns)
            return x.copy()
        dt = (int(t_ns) - self._t) * 1e-9
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / max(scale, 1e-9)
        a = self._alpha(cutoff, dt)
        self._x = np.where(np.isfinite(x), a * x + (1 - a) * self._x, self._x)
        self._t = int(t_ns)
        return self._x.copy()


@dataclass
class Track:
    """The tracked face.

    Attributes:
        face_id: REP-155 face id.
        points: ``(N, 2)`` landmarks of the model's scheme, sensor pixels.
        confidence: ``(N,)`` confidences of ``points``.
        stamp_ns: stamp of the last update.
        pose: last head pose, or None.
        misses: consecutive low-confidence frames.
        frames: frames tracked.
    """

    face_id: str
    points: np.ndarray
    confidence: np.ndarray
    stamp_ns: int
    pose: HeadPose | None = None
    misses: int = 0
    frames: int = 1
    smoother: OneEuroFilter | None = field(default=None, repr=False)


class FaceTracker:
    """Track one face: ids, misses, the crop box of the next frame.

    Args:
        box_scale: face box = landmark extent x this factor (the model's ``InputSpec``).
        lost_after: consecutive misses after which the face is dropped.
        id_prefix: prefix of face ids (ids must not start with a digit in ROS names).
    """

    def __init__(self, box_scale: float, lost_after: int = 3, id_prefix: str = "f") -> None:
        self.box_scale = float(box_scale)
        self.lost_after = int(lost_after)
        self.id_prefix = id_prefix
        self.track: Track | None = None
        self._next_id = 1

    @property
    def tracking(self) -> bool:
        """True while a face is tracked."""
        return self.track is not None

    def start(self, points: np.ndarray, confidence: np.ndarray, stamp_ns: int) -> Track:
        """Begin a new track (new face id)."""
        face_id = f"{self.id_prefix}{self._next_id:04d}"
        self._next_id += 1
        self.track = Track(face_id, np.array(points, np.float64), np.array(confidence), stamp_ns)
        return self.track

    def update(self, points: np.ndarray, confidence: np.ndarray, stamp_ns: int, hit: bool) -> bool:
        """Store a tracked frame's landmarks; False (and no track) when the face is lost.

        A hit resets the miss counter; after ``lost_after`` consecutive misses the face is lost.
        Landmarks of a miss are kept only if finite (the box keeps following a moving face).
        """
        tr = self.track
        if tr is None:
            return False
        if hit:
            tr.misses = 0
        else:
            tr.misses += 1
            if tr.misses >= self.lost_after:
                self.track = None
                return False
        pts = np.asarray(points, np.float64)
        if np.all(np.isfinite(pts)):
            tr.points, tr.confidence = pts.copy(), np.asarray(confidence).copy()
        tr.stamp_ns = int(stamp_ns)
        tr.frames += 1
        return True

    def drop(self) -> None:
        """Forget the track (no face)."""
        self.track = None

    def box(self) -> Box | None:
        """Crop box for the next frame, from the extent of all the last landmarks.

        All points: the network has no visibility output (training crops are the extent of the
        *visible* ground-truth points), and its confidence estimates each point's error
        (``exp(-error / tau)``), not its visibility; a box from only the confident points (eyes,
        nose) is smaller than the face and is lost by the detector check.
        """
        if self.track is None:
            return None
        return box_from_landmarks(self.track.points, None, self.box_scale)


def activity_map(
    events: np.ndarray | None, rgb: np.ndarray | None, width: int, height: int, cell: int = 8
) -> np.ndarray:
    """Coarse ``(ceil(H/cell), ceil(W/cell))`` map of where something is.

    Events per cell when there are events, else the RGB gradient energy (flat areas have none).
    """
    gh, gw = -(-height // cell), -(-width // cell)
    if events is not None and events.size:
        x = np.minimum(events["x"].astype(np.int64) // cell, gw - 1)
        y = np.minimum(events["y"].astype(np.int64) // cell, gh - 1)
        return np.bincount(y * gw + x, minlength=gh * gw).reshape(gh, gw).astype(np.float64)
    if rgb is not None:
        g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
        mag = np.abs(cv2.Sobel(g, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1))
        return cv2.resize(mag, (gw, gh), interpolation=cv2.INTER_AREA).astype(np.float64)
    return np.zeros((gh, gw))


def candidate_boxes(
    width: int, height: int, activity: np.ndarray, min_side: float, top_k: int, cell: int = 8
) -> list[Box]:
    """Square crops of a few sizes on a half-overlapping grid, the ``top_k`` most active first.

    Activity is the share of the map's mass inside a box, times a mild preference for boxes whose
    activity is not all at their border; the largest centred box is always included (faces that
    fill the view are the common case).
    """
    short = float(min(width, height))
    sides = [s for s in (0.95 * short, 0.7 * short, 0.5 * short, 0.35 * short) if s >= min_side]
    sides = sides or [max(min_side, 1.0)]
    integral = cv2.integral(activity.astype(np.float64))
    total = max(float(integral[-1, -1]), 1e-9)
    gh, gw = activity.shape

    def mass(x0: float, y0: float, x1: float, y1: float) -> float:
        c0 = int(np.clip(math.floor(x0 / cell), 0, gw))
        r0 = int(np.clip(math.floor(y0 / cell), 0, gh))
        c1 = int(np.clip(math.ceil(x1 / cell), 0, gw))
        r1 = int(np.clip(math.ceil(y1 / cell), 0, gh))
        return float(integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0])

    scored: list[tuple[float, Box]] = []
    for side in sides:
        half = side / 2
        xs = np.arange(half, max(width - half, half) + 1e-6, side / 2) - 0.5
        ys = np.arange(half, max(height - half, half) + 1e-6, side / 2) - 0.5
        for cy in ys:
            for cx in xs:
                m = mass(cx - half, cy - half, cx + half, cy + half)
                inner = mass(cx - half / 2, cy - half / 2, cx + half / 2, cy + half / 2)
                # density, with the inner half weighted up: a face is active in its middle
                score = (m + inner) / total / (side / short) ** 0.5
                scored.append((score, Box(float(cx), float(cy), float(side))))
    scored.sort(key=lambda s: -s[0])
    centre = Box((width - 1) / 2, (height - 1) / 2, sides[0])
    out = [centre]
    for _, b in scored:
        if len(out) >= top_k:
            break
        if all(abs(b.cx - o.cx) > 1e-6 or abs(b.cy - o.cy) > 1e-6 or b.side != o.side for o in out):
            out.append(b)
    return out[: max(1, top_k)]


def plausibility(points: np.ndarray, crop: Box, box_scale: float) -> float:
    """How much the landmarks look like a face framed as in training, in ``[0, 1]``.

    Training crops are the landmark box x ``box_scale`` with ~15% scale and ~6% shift jitter, so
    a real face predicted in a crop gives a landmark box of about the crop's size and centre.
    """
    pts = np.asarray(points, np.float64)
    if not np.all(np.isfinite(pts)):
        return 0.0
    b = box_from_landmarks(pts, None, box_scale)
    ratio = math.log(max(b.side, 1e-6) / crop.side)
    shift = math.hypot(b.cx - crop.cx, b.cy - crop.cy) / crop.side
    return float(math.exp(-((ratio / 0.35) ** 2) - (shift / 0.2) ** 2))
