"""Debug rendering of a result: RGB | events side by side with landmarks, box and pose axes.

Used by the node's ``~/debug_image`` (only while someone subscribes) and by ``facealign demo``.
"""

from __future__ import annotations

import cv2
import numpy as np

from facealign_ros.face.pose import default_intrinsics, project_points
from facealign_ros.pipeline.result import FaceResult

_GREEN, _RED, _BLUE, _YELLOW = (0, 220, 0), (230, 40, 40), (40, 90, 255), (255, 220, 0)


def events_image(events: np.ndarray | None, width: int, height: int) -> np.ndarray:
    """``(H, W, 3)`` uint8: grey background, ON events white, OFF events black."""
    img = np.full((height, width, 3), 128, np.uint8)
    if events is None or events.size == 0:
        return img
    x, y, p = events["x"].astype(np.int64), events["y"].astype(np.int64), events["p"]
    ok = (x < width) & (y < height)
    img[y[ok], x[ok]] = np.where(p[ok, None] > 0, 255, 0).astype(np.uint8)
    return img


def _overlay(
    img: np.ndarray, r: FaceResult, K: np.ndarray, distortion: tuple[str, np.ndarray] | None
) -> None:
    if r.roi is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in r.roi)
        cv2.rectangle(img, (x0, y0), (x1, y1), _YELLOW, 1)
    if r.has_face:
        for (x, y), c in zip(r.landmarks, r.confidence, strict=True):
            if np.isfinite(x) and np.isfinite(y):
                colour = _GREEN if c >= 0.5 else _RED
                cv2.circle(img, (int(round(x)), int(round(y))), 1, colour, -1)
    if r.pose is not None:
        axes = np.array([[0, 0, 0], [0.05, 0, 0], [0, 0.05, 0], [0, 0, -0.05]], np.float64)
        pts = project_points(axes, r.pose.rotation, r.pose.translation, K, distortion)
        o, *ends = (tuple(int(round(v)) for v in p) for p in pts)
        for end, colour in zip(ends, (_RED, _GREEN, _BLUE), strict=True):
            cv2.line(img, o, end, colour, 2)


def render_result(
    result: FaceResult,
    events: np.ndarray | None = None,
    rgb: np.ndarray | None = None,
    K: np.ndarray | None = None,
    distortion: tuple[str, np.ndarray] | None = None,
) -> np.ndarray:
    """``(H, 2W, 3)`` uint8 RGB: the RGB frame (black if none) and the events, both annotated.

    Inputs default to ``result.debug``'s. ``K`` and ``distortion`` (``(model, coefficients)``,
    :func:`facealign_ros.face.pose.camera_distortion`) place the pose axes in the image as the
    camera saw them (default: a pinhole without distortion).
    """
    w, h = result.width, result.height
    if result.debug is not None:
        events = result.debug.events if events is None else events
        rgb = result.debug.rgb if rgb is None else rgb
    K = default_intrinsics(w, h) if K is None else K
    left = np.zeros((h, w, 3), np.uint8) if rgb is None else np.ascontiguousarray(rgb).copy()
    right = events_image(events, w, h)
    for img in (left, right):
        _overlay(img, result, K, distortion)
    out = np.concatenate([left, right], axis=1)
    label = f"{result.mode} {result.face_id or 'no face'} c={result.mean_confidence:.2f}"
    cv2.putText(out, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _YELLOW, 1, cv2.LINE_AA)
    return out
