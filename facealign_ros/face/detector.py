"""Face boxes in RGB frames: MediaPipe's BlazeFace (short range) run by OpenCV's DNN module.

The node's face search needs a first crop near the face; the landmark network alone, scoring a
few grid crops, settles on wrong boxes on real faces (docs/MODEL_CARD.md). BlazeFace is a small
SSD face detector trained on real faces (0.1 M parameters, one 128x128 pass ~2-3 ms on a 2-core
CPU); its model ships inside the ``mediapipe==0.10.21`` wheel on PyPI (Apache-2.0), from where
:func:`~facealign_ros.face.detector_model.fetch_detector_model` takes it once; no mediapipe import
and no ``numpy<2`` are involved, OpenCV (>= 4.8, TFLite import) runs the model.

Model contract (MediaPipe ``face_detection_short_range``): a 128x128 RGB image in [-1, 1] (the
frame letterboxed to a square); 896 SSD anchors (16x16 cells x 2 at stride 8, 8x8 cells x 6 at
stride 16, unit size); per anchor a score logit and 16 regressors: box centre offset and size,
then 6 keypoints (the subject's right eye, left eye, nose tip, mouth centre, right ear tragion,
left ear tragion), all in 128-px input units. Overlapping boxes are merged by score-weighted
non-maximum suppression (IoU > 0.3), as MediaPipe does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facealign_ros.face.detector_model import (  # noqa: F401 - re-exported
    DetectorError,
    default_detector_path,
    fetch_detector_model,
)

INPUT_SIZE = 128
NUM_ANCHORS = 896
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear")
"""BlazeFace keypoints, in output order (the subject's right and left)."""
DIM_BLUR_SIGMA = 1.5
"""Gaussian blur (frame px) of a dim frame before its contrast is stretched."""
DIM_PERCENTILES = (1.0, 99.5)
"""Levels stretched to 0 and 255 in a dim frame; the upper one also decides what is dim."""


def brighten_dim(rgb: np.ndarray, level: float) -> np.ndarray:
    """The frame BlazeFace looks at: a dim frame denoised and stretched, any other unchanged.

    A frame is dim when the 99.5th percentile of its values (every 4th pixel and row, all
    channels) is under ``level`` (0-255). Such a frame (a short exposure in the dark: a few
    electrons per pixel, shot noise as large as the signal) is blurred (:data:`DIM_BLUR_SIGMA`)
    and its 1st-99.5th percentile range stretched to 0-255. Measured on the small-pixel
    camera's dark test frames: the best detection is off the face in 1 frame of 200 instead of
    11, on it as often (docs/MODEL_CARD.md).

    Args:
        rgb: ``(H, W, 3)`` or ``(H, W)`` uint8 frame.
        level: dimness threshold, 0-255; 0 never changes the frame.

    Returns:
        ``rgb`` itself, or a new uint8 array of the same shape.
    """
    img = np.asarray(rgb)
    if level <= 0 or img.dtype != np.uint8 or img.size == 0:
        return img
    lo_q, hi_q = DIM_PERCENTILES
    if float(np.percentile(img[::4, ::4], hi_q)) >= level:
        return img
    smooth = cv2.GaussianBlur(np.ascontiguousarray(img), (0, 0), DIM_BLUR_SIGMA)
    lo, hi = np.percentile(smooth[::4, ::4], (lo_q, hi_q))
    gain = 255.0 / max(float(hi - lo), 1.0)
    out = (smooth.astype(np.float32) - float(lo)) * gain
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


def ssd_anchors() -> np.ndarray:
    """``(896, 2)`` anchor centres in [0, 1] (x, y), in the model's output order."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = INPUT_SIZE // stride
        ys, xs = np.mgrid[0:n, 0:n]
        centres = np.stack([(xs.ravel() + 0.5) / n, (ys.ravel() + 0.5) / n], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float64)


_ANCHORS_PX = ssd_anchors() * INPUT_SIZE
"""Anchor centres in input pixels (computed once)."""


@dataclass(frozen=True)
class FaceDetection:
    """One face found in a frame.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in frame pixels (BlazeFace's box: brows to chin, cheek to
            cheek; not a landmark box).
        score: detection probability in [0, 1].
        keypoints: ``(6, 2)`` pixels, in :data:`KEYPOINTS` order.
        brightened: found in a dim frame after :func:`brighten_dim` (its boxes sit differently
            on the face: ``facealign_ros.pipeline.detection.box_from_detection``).
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray
    brightened: bool = False

    @property
    def centre(self) -> tuple[float, float]:
        """Box centre, pixels."""
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def side(self) -> float:
        """Mean of the box's width and height, pixels."""
        return ((self.box[2] - self.box[0]) + (self.box[3] - self.box[1])) / 2


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(4,)`` box with ``(N, 4)`` boxes (x0, y0, x1, y1)."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Merge overlapping detections, best first: each cluster's score-weighted mean box.

    Args:
        boxes: ``(N, 4)`` x0, y0, x1, y1.
        keypoints: ``(N, K, 2)``.
        scores: ``(N,)``.
        iou_threshold: boxes overlapping the cluster's best by more than this join it.

    Returns:
        ``(box (4,), keypoints (K, 2), score)`` per cluster; the score is the best one's.
    """
    order = np.argsort(-scores, kind="stable")
    left = order
    out = []
    while left.size:
        best = left[0]
        member = _iou(boxes[best], boxes[left]) > iou_threshold
        member[0] = True
        idx = left[member]
        w = scores[idx] / scores[idx].sum()
        out.append(
            (
                (boxes[idx] * w[:, None]).sum(axis=0),
                (keypoints[idx] * w[:, None, None]).sum(axis=0),
                float(scores[best]),
            )
        )
        left = left[~member]
    return out


def _read_net(path: Path) -> cv2.dnn.Net:
    if not hasattr(cv2.dnn, "readNetFromTFLite"):
        raise DetectorError(
            f"OpenCV {cv2.__version__} cannot read TFLite models (needs >= 4.8): "
            "pip install 'opencv-python-headless>=4.8'"
        )
    try:
        # OpenCV 5's classic engine takes NCHW input and returns both heads in one pass
        return cv2.dnn.readNetFromTFLite(str(path), engine=cv2.dnn.ENGINE_CLASSIC)
    except (TypeError, AttributeError):
        return cv2.dnn.readNetFromTFLite(str(path))


class BlazeFaceDetector:
    """Face boxes in RGB frames (BlazeFace short range, letterboxed to 128x128).

    Args:
        model_path: the ``.tflite`` file; default :func:`default_detector_path` (fetch it first
            with :func:`fetch_detector_model`, ``facealign fetch-detector`` or ``./run.sh setup``).
        min_score: detections under this probability are dropped.
        iou_threshold: overlap at which detections are merged.
        dim_level: frames dimmer than this (0-255) are denoised and stretched first
            (:func:`brighten_dim`); 0 = never.

    Raises:
        DetectorError: missing or unreadable file, or a model without BlazeFace's outputs.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        min_score: float = 0.5,
        iou_threshold: float = 0.3,
        dim_level: float = 0.0,
    ) -> None:
        path = Path(model_path).expanduser() if model_path else default_detector_path()
        if not path.is_file():
            raise DetectorError(
                f"face-detector model {path} not found: run `facealign fetch-detector` "
                "(or ./run.sh setup) once"
            )
        try:
            self._net = _read_net(path)
        except cv2.error as exc:
            raise DetectorError(f"{path}: not a TFLite model OpenCV can read: {exc}") from exc
        self.path = path
        self.min_score = float(min_score)
        self.iou_threshold = float(iou_threshold)
        self.dim_level = float(dim_level)
        self._anchors = ssd_anchors()
        try:
            self._net.setInput(np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), np.float32))
            scores, regs = self._net.forward(["classificators", "regressors"])
        except cv2.error as exc:
            raise DetectorError(f"{path}: not a BlazeFace short-range model: {exc}") from exc
        if scores.size != NUM_ANCHORS or regs.size != NUM_ANCHORS * 16:
            raise DetectorError(
                f"{path}: outputs {scores.shape}, {regs.shape}; a BlazeFace short-range "
                f"model has ({NUM_ANCHORS},) scores and ({NUM_ANCHORS}, 16) regressors"
            )

    def _run(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One ``(1, 3, 128, 128)`` input -> ``(896,)`` logits, ``(896, 16)`` regressors.

        One image per pass: OpenCV concatenates a batch's heads level by level (all images'
        stride-8 anchors, then all stride-16 ones), not image by image.
        """
        self._net.setInput(np.ascontiguousarray(blob))
        scores, regs = self._net.forward(["classificators", "regressors"])
        return scores.reshape(NUM_ANCHORS), regs.reshape(NUM_ANCHORS, 16)

    def detect(
        self, rgb: np.ndarray, windows: Sequence[tuple[float, float, float]] | None = None
    ) -> list[FaceDetection]:
        """Faces in one frame, best first.

        Args:
            rgb: ``(H, W, 3)`` uint8 RGB frame (a ``(H, W)`` grey frame is accepted).
            windows: square windows ``(x0, y0, side)`` (frame px; may reach past the frame) to
                look in, one network pass each (detections merged across them); default the
                whole frame. The model finds faces of ~15-90 % of a window's side.

        Returns:
            Detections with probability >= ``min_score``, merged; pixel coordinates of ``rgb``.

        Raises:
            ValueError: an empty frame or one that is not ``(H, W)`` / ``(H, W, 3)`` uint8, or
                a window without a positive finite side.
        """
        rgb = np.asarray(rgb)
        frame = brighten_dim(rgb, self.dim_level)
        inputs = [letterbox(frame, w) for w in (windows if windows is not None else [None])]
        if not inputs:
            return []
        parts = [
            candidates(*self._run(sq.transpose(2, 0, 1)[None]), scale, offset, self.min_score)
            for sq, scale, offset in inputs
        ]
        boxes = np.concatenate([p[0] for p in parts])
        kps = np.concatenate([p[1] for p in parts])
        probs = np.concatenate([p[2] for p in parts])
        found = merge(boxes, kps, probs, self.iou_threshold)
        if frame is not rgb:
            found = [dataclasses.replace(d, brightened=True) for d in found]
        return found


def letterbox(
    rgb: np.ndarray, window: tuple[float, float, float] | None = None
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """The model's input: a square window of the frame shrunk to 128x128, black outside.

    Args:
        rgb: ``(H, W, 3)`` or ``(H, W)`` uint8.
        window: ``(x0, y0, side)`` in frame px; default the frame centred in a square of its
            long side (letterboxing).

    Returns:
        ``(square, (sx, sy), (ox, oy))``: ``(128, 128, 3)`` float32 in [-1, 1]; input px per
        frame px along x and y (the placed pixels' own, rounding included); where the frame's
        pixel (0, 0) lands, input px: frame ``(x, y)`` -> input ``(x sx + ox, y sy + oy)``.

    Raises:
        ValueError: an empty frame or one that is not ``(H, W)`` / ``(H, W, 3)`` uint8, or a
            window without a positive finite side.
    """
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(
            f"face detection needs an (H, W, 3) or (H, W) uint8 image, got {img.dtype} {img.shape}"
        )
    h, w = img.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("face detection needs a non-empty image")
    if window is None:
        side = float(max(h, w))
        x0, y0 = (w - side) / 2, (h - side) / 2
    else:
        x0, y0, side = (float(v) for v in window)
        if not (np.isfinite([x0, y0, side]).all() and side > 0):
            raise ValueError(f"face detection window {window} needs a positive finite side")
    scale = INPUT_SIZE / side
    square = np.full((INPUT_SIZE, INPUT_SIZE, 3), -1.0, np.float32)
    # whole frame pixels inside the window
    ix0, iy0 = max(0, math.ceil(x0 - 1e-9)), max(0, math.ceil(y0 - 1e-9))
    ix1, iy1 = min(w, math.floor(x0 + side + 1e-9)), min(h, math.floor(y0 + side + 1e-9))
    dx0 = min(INPUT_SIZE - 1, max(0, round((ix0 - x0) * scale)))
    dy0 = min(INPUT_SIZE - 1, max(0, round((iy0 - y0) * scale)))
    dx1 = min(INPUT_SIZE, dx0 + max(1, round((ix1 - ix0) * scale)))
    dy1 = min(INPUT_SIZE, dy0 + max(1, round((iy1 - iy0) * scale)))
    if ix1 <= ix0 or iy1 <= iy0 or dx1 <= dx0 or dy1 <= dy0:
        return square, (scale, scale), (-x0 * scale, -y0 * scale)
    sub = img[iy0:iy1, ix0:ix1]
    if sub.ndim == 2:
        sub = np.repeat(sub[:, :, None], 3, axis=2)
    small = cv2.resize(
        np.ascontiguousarray(sub), (dx1 - dx0, dy1 - dy0), interpolation=cv2.INTER_AREA
    )
    square[dy0:dy1, dx0:dx1] = small.astype(np.float32) / 127.5 - 1.0
    # the placed pixels define the map: frame px p -> input (p - i0) * s + d0, per axis
    sx, sy = (dx1 - dx0) / (ix1 - ix0), (dy1 - dy0) / (iy1 - iy0)
    return square, (sx, sy), (dx0 - ix0 * sx, dy0 - iy0 * sy)


def candidates(
    logits: np.ndarray,
    regressors: np.ndarray,
    scale: float | tuple[float, float],
    offset: tuple[float, float],
    min_score: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BlazeFace outputs of one input -> unmerged detections in frame pixels.

    Args:
        logits: ``(896,)`` score logits.
        regressors: ``(896, 16)`` per anchor: box centre offset (x, y) and size (w, h), then
            6 keypoints (x, y) relative to the anchor centre, input px.
        scale: input px per frame px, one or ``(sx, sy)`` (:func:`letterbox`).
        offset: where the frame's pixel (0, 0) lands in the input, px.
        min_score: probability a detection needs.

    Returns:
        ``boxes (N, 4)`` x0, y0, x1, y1; ``keypoints (N, 6, 2)``; ``probs (N,)``.
    """
    probs = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logits, np.float64).reshape(-1), -100, 100)))
    keep = np.flatnonzero(probs >= min_score)
    anchors = _ANCHORS_PX[keep]
    r = np.asarray(regressors, np.float64).reshape(-1, 16)[keep]
    cx, cy = anchors[:, 0] + r[:, 0], anchors[:, 1] + r[:, 1]
    bw, bh = np.abs(r[:, 2]), np.abs(r[:, 3])
    o = np.asarray(offset, np.float64)
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) - np.tile(o, 2)
    kps = r[:, 4:].reshape(-1, 6, 2) + anchors[:, None, :] - o
    s = np.broadcast_to(np.asarray(scale, np.float64), (2,))
    return boxes / np.tile(s, 2), kps / s, probs[keep]


def merge(
    boxes: np.ndarray, keypoints: np.ndarray, probs: np.ndarray, iou_threshold: float = 0.3
) -> list[FaceDetection]:
    """Merged detections (:func:`weighted_nms`), best first; degenerate boxes dropped."""
    ok = np.all(np.isfinite(boxes), axis=1) & np.all(np.isfinite(keypoints), axis=(1, 2))
    ok &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    out = []
    for box, kp, score in weighted_nms(boxes[ok], keypoints[ok], probs[ok], iou_threshold):
        x0, y0, x1, y1 = (float(v) for v in box)
        out.append(FaceDetection((x0, y0, x1, y1), score, kp))
    return out
