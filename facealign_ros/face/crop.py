"""Face crops: square boxes, the affine map from sensor pixels to crop pixels, and warping.

Conventions: pixel-centre coordinates (pixel ``(i, j)`` has its centre at ``x = j, y = i``, as
OpenCV). An affine ``A`` is a ``(2, 3)`` float64 matrix mapping a source point ``p`` to
``A[:, :2] @ p + A[:, 2]`` in crop pixels. Normalised crop coordinates are
``u = (p_crop + 0.5) / out_size``, so the crop's outer edges are 0 and 1. Training and the
runtime use these same functions, so crops agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numba as nb
import numpy as np

from facealign_ros.events.types import EVENT_DTYPE, as_events


@dataclass(frozen=True)
class Box:
    """A square face box in source pixels.

    Attributes:
        cx: centre x, pixels.
        cy: centre y, pixels.
        side: side length, pixels (> 0).
    """

    cx: float
    cy: float
    side: float

    def scaled(self, factor: float) -> Box:
        """The same box with its side multiplied by ``factor``."""
        return Box(self.cx, self.cy, self.side * factor)

    def iou(self, other: Box) -> float:
        """Intersection over union of the two squares, in [0, 1]."""
        h1, h2 = self.side / 2, other.side / 2
        iw = max(0.0, min(self.cx + h1, other.cx + h2) - max(self.cx - h1, other.cx - h2))
        ih = max(0.0, min(self.cy + h1, other.cy + h2) - max(self.cy - h1, other.cy - h2))
        inter = iw * ih
        return inter / max(self.side**2 + other.side**2 - inter, 1e-12)

    def near(self, other: Box, tolerance: float) -> bool:
        """True when ``other``'s centre and side are within ``tolerance`` x this side of ours."""
        lim = tolerance * self.side
        return (
            abs(other.cx - self.cx) <= lim
            and abs(other.cy - self.cy) <= lim
            and abs(other.side - self.side) <= lim
        )

    def as_roi(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` continuous edges of the box, pixels."""
        h = self.side / 2
        return self.cx - h, self.cy - h, self.cx + h, self.cy + h


def box_from_landmarks(
    points: np.ndarray, visible: np.ndarray | None = None, scale: float = 1.25
) -> Box:
    """Square box around landmarks: the larger extent of the points, times ``scale``.

    Args:
        points: ``(N, 2)`` landmarks in pixels.
        visible: optional ``(N,)`` mask or scores (> 0.5 = use); all points when too few are set.
        scale: enlargement of the extent (1.25 leaves margin for the forehead and jaw).

    Raises:
        ValueError: if there are no finite points.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    ok = np.all(np.isfinite(pts), axis=1)
    if visible is not None:
        vis = ok & (np.asarray(visible, dtype=np.float64).reshape(-1) > 0.5)
        if vis.sum() >= 4:
            ok = vis
    if not ok.any():
        raise ValueError("box_from_landmarks: no finite landmarks")
    lo, hi = pts[ok].min(axis=0), pts[ok].max(axis=0)
    centre = (lo + hi) / 2
    side = max(float(np.max(hi - lo)) * scale, 1.0)
    return Box(float(centre[0]), float(centre[1]), side)


def crop_affine(box: Box, out_size: int, angle_deg: float = 0.0) -> np.ndarray:
    """Affine map from source pixels to an ``out_size`` crop of ``box`` (rotated by ``angle``).

    The box's continuous edges map to the crop's outer edges; a positive angle rotates the
    face counter-clockwise in the crop (image y down).

    Returns:
        ``(2, 3)`` float64 matrix.
    """
    if box.side <= 0 or out_size <= 0:
        raise ValueError(f"crop_affine: invalid box side {box.side} or size {out_size}")
    s = out_size / box.side
    a = math.radians(angle_deg)
    c, si = math.cos(a) * s, math.sin(a) * s
    rot = np.array([[c, si], [-si, c]])
    centre_out = np.array([out_size / 2 - 0.5, out_size / 2 - 0.5])
    t = centre_out - rot @ np.array([box.cx, box.cy])
    return np.hstack([rot, t[:, None]])


def invert_affine(A: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine map."""
    return cv2.invertAffineTransform(np.asarray(A, dtype=np.float64))


def transform_points(points: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Apply ``A`` to ``(..., 2)`` points; returns float64 ``(..., 2)``."""
    p = np.asarray(points, dtype=np.float64)
    return p @ A[:, :2].T + A[:, 2]


def to_normalized(points_crop: np.ndarray, out_size: int) -> np.ndarray:
    """Crop pixels -> normalised ``[0, 1]`` crop coordinates."""
    return (np.asarray(points_crop, dtype=np.float64) + 0.5) / out_size


def from_normalized(points_norm: np.ndarray, out_size: int) -> np.ndarray:
    """Normalised ``[0, 1]`` crop coordinates -> crop pixels."""
    return np.asarray(points_norm, dtype=np.float64) * out_size - 0.5


def covering_roi(
    A: np.ndarray, out_size: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """Integer source region ``[x0, x1) x [y0, y1)`` that the crop sees, clipped to the image.

    Returns an empty region (x0 == x1 or y0 == y1) when the crop lies outside the image.
    """
    inv = invert_affine(A)
    e = out_size - 0.5
    corners = transform_points(np.array([[-0.5, -0.5], [e, -0.5], [-0.5, e], [e, e]]), inv)
    x0 = int(np.clip(math.floor(corners[:, 0].min()) - 1, 0, width))
    y0 = int(np.clip(math.floor(corners[:, 1].min()) - 1, 0, height))
    x1 = int(np.clip(math.ceil(corners[:, 0].max()) + 2, x0, width))
    y1 = int(np.clip(math.ceil(corners[:, 1].max()) + 2, y0, height))
    return x0, y0, x1, y1


def shift_affine(A: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """``A`` for source coordinates given relative to the origin ``(x0, y0)``."""
    out = np.array(A, dtype=np.float64, copy=True)
    out[:, 2] += A[:, :2] @ np.array([x0, y0], dtype=np.float64)
    return out


def by_channel_groups(fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """Apply an OpenCV image function to an ``(H, W, C)`` image in groups of <= 4 channels.

    OpenCV's warps and resizes handle at most 4 channels at a time; ``fn`` maps one
    ``(H, W, c)`` group to ``(H', W'[, c])``. Groups have 1, 3 or 4 channels: OpenCV's
    2-channel float ``warpAffine`` is off by up to ~2 % of the range. Returns ``(H', W', C)``.
    """
    img = np.ascontiguousarray(image)
    if img.ndim == 2:
        return fn(img)
    cuts = list(range(0, img.shape[2], 4)) + [img.shape[2]]
    if cuts[-1] - cuts[-2] == 2:  # no 2-channel groups: OpenCV's float warp is inexact there
        cuts.insert(-1, cuts[-2] + 1)
    parts = []
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        part = fn(np.ascontiguousarray(img[:, :, lo:hi]))
        parts.append(part.reshape(*part.shape[:2], -1))
    return np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]


def warp_image(
    image: np.ndarray, A: np.ndarray, out_size: int, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """Warp an ``(H, W)`` or ``(H, W, C)`` image (any C, uint8 or float32) into the crop.

    Pixels outside the source are 0.

    Returns:
        ``(out_size, out_size[, C])`` array of the input dtype.
    """
    size = (out_size, out_size)
    return by_channel_groups(
        lambda g: cv2.warpAffine(g, A, size, flags=interpolation, borderValue=0), image
    )


def warp_chw(rep: np.ndarray, A: np.ndarray, out_size: int) -> np.ndarray:
    """Warp a channels-first ``(C, H, W)`` float32 representation into the crop (bilinear).

    One plane at a time: no transposes, and exact bilinear values (OpenCV's 2-channel float
    ``warpAffine`` is off by up to ~1.5 % of the range; 1-channel planes match a float64
    reference to 1e-6).
    """
    src = np.asarray(rep, dtype=np.float32)
    out = np.empty((src.shape[0], out_size, out_size), np.float32)
    size = (out_size, out_size)
    for c in range(src.shape[0]):
        cv2.warpAffine(np.ascontiguousarray(src[c]), A, size, dst=out[c],
                       flags=cv2.INTER_LINEAR, borderValue=0)  # fmt: skip
    return out


def events_in_roi(events: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """Events inside ``[x0, x1) x [y0, y1)``, with x, y shifted to the region's origin (copy).

    One pass of a numba kernel over the 16-byte records (the window of a 5 Mev/s stream holds
    ~150 k events; ``python -m training.bench.crop_input`` times it against a numpy mask + take).
    """
    x0, y0, x1, y1 = (int(v) for v in roi)
    ev = as_events(events)
    out = np.empty(ev.size, EVENT_DTYPE)
    if ev.size == 0 or x1 <= x0 or y1 <= y0:
        return out[:0]
    words = ev.view(np.uint64).reshape(-1, 2)
    k = _roi_copy(words, max(x0, 0), max(y0, 0), x1, y1, x0, y0, out.view(np.uint64).reshape(-1, 2))
    return out[:k]


@nb.njit(cache=True, nogil=True)
def _roi_copy(words, lo_x, lo_y, x1, y1, x0, y0, out):  # pragma: no cover - numba
    """Copy records with ``lo_x <= x < x1``, ``lo_y <= y < y1``; x -= x0, y -= y0.

    ``words``/``out`` are the records as ``(n, 2)`` uint64 (``t``; then ``x | y << 16 | p << 32``
    little-endian). Branch-free: every record is written at the output cursor, which advances
    only for records inside (noise makes the test unpredictable: a branch mispredicts often);
    the cursor never passes the input index, so ``out`` as long as ``words`` is enough.
    """
    k = 0
    shift = np.uint64(x0 & 0xFFFF) | (np.uint64(y0 & 0xFFFF) << np.uint64(16))
    for i in range(words.shape[0]):
        w = words[i, 1]
        xi = np.int64(w & np.uint64(0xFFFF))
        yi = np.int64((w >> np.uint64(16)) & np.uint64(0xFFFF))
        out[k, 0] = words[i, 0]
        # x - x0 and y - y0 with their own 16-bit wrap (kept records never wrap)
        lo = ((w & np.uint64(0xFFFF)) - (shift & np.uint64(0xFFFF))) & np.uint64(0xFFFF)
        hi = ((w & np.uint64(0xFFFF0000)) - (shift & np.uint64(0xFFFF0000))) & np.uint64(0xFFFF0000)
        out[k, 1] = (w & ~np.uint64(0xFFFFFFFF)) | hi | lo
        k += (xi >= lo_x) & (xi < x1) & (yi >= lo_y) & (yi < y1)
    return k
