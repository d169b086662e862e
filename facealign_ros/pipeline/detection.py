"""BlazeFace in the pipeline: loading the detector and framing its boxes as the network's crops.

The constants say how a BlazeFace box relates to the landmark crop (calibrated on synthetic
training bags, checked on real photos) and how the tracker uses detections (the window it looks
in around a small face, when a detection confirms or contradicts a tracked box).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from facealign_ros.face.crop import Box
from facealign_ros.face.detector import (
    BlazeFaceDetector,
    DetectorError,
    FaceDetection,
    default_detector_path,
)
from facealign_ros.pipeline.config import PipelineConfig

DETECTION_EXTENT = 1.04
"""Landmark-extent side per BlazeFace box side (median 1.036, IQR 0.96-1.09 on synthetic
training bags; 1.00 on the real-photo development set)."""
DETECTION_DROP = 0.045
"""Landmark-box centre below the BlazeFace box centre, per box side (synthetic median 0.044)."""
DIM_DETECTION_EXTENT = DETECTION_EXTENT
"""``DETECTION_EXTENT`` for a detection in a brightened dim frame (``brighten_dim``). Kept at
the normal value: measured (``python -m training.bench.detector_frames``), such detections'
landmark extent per side is 1.12 on 40 dark small-pixel training bags and 1.10 on the real-photo
development set's dim frames, but framing them so did not help in node replay
(docs/MODEL_CARD.md, "The node in the dark"). Calibrate it on your own dark recordings."""
DIM_DETECTION_DROP = DETECTION_DROP
"""``DETECTION_DROP`` for a detection in a brightened dim frame; the measurements disagree in
sign (median +0.110 on those training bags, -0.047 on the real photos), so the normal value."""
SMALL_FACE = 0.2
"""Faces smaller than this share of the frame's long side are looked for in a window around
the tracked box (BlazeFace short range misses faces under ~15 % of its input)."""
CHECK_WINDOW = 2.5
"""Side of that window per tracked box side (the face then spans ~30 % of it)."""
AGREE_IOU = 0.85
"""When the tracked box and the detection overlap this much, the next frame is not looked at
(on the 30 replay bags: 27 % fewer detector passes, real-photo NME 0.210 against 0.206)."""
REDETECT_IOU = 0.3
"""A tracked box overlapping no detected face by more than this is a wrong lock."""


def load_detector(
    config: PipelineConfig, warn: Callable[[str], object] | None = None
) -> BlazeFaceDetector | None:
    """The face detector ``config`` asks for; None for the grid search.

    ``auto`` without ``face_detector_model`` gives None when the cache has no model, or one
    that does not load (e.g. OpenCV < 4.8); ``warn`` is told why. A named file, or
    ``blazeface``, must load.

    Raises:
        DetectorError: the detector is required (or named) and cannot be loaded.
    """
    if config.face_detector == "grid":
        return None
    named = config.face_detector_model
    fallback = config.face_detector == "auto" and not named
    try:
        if fallback and not default_detector_path().is_file():
            raise DetectorError(
                "its model is not in the cache (`facealign fetch-detector` fetches it)"
            )
        return BlazeFaceDetector(
            named or None,
            min_score=config.face_detector_threshold,
            dim_level=config.face_detector_dim_level,
        )
    except DetectorError as exc:
        if fallback:
            if warn is not None:
                warn(f"face search without BlazeFace, grid candidates only: {exc}")
            return None
        raise DetectorError(f"face_detector={config.face_detector!r}: {exc}") from exc


class BoxCheck(NamedTuple):
    """BlazeFace's word on a tracked box.

    Attributes:
        box: crop this frame here.
        restart: the track was a wrong lock: start a new one at ``box``.
    """

    box: Box
    restart: bool


def box_from_detection(det: FaceDetection, box_scale: float) -> Box:
    """The network's crop for a BlazeFace detection (framed as ``box_from_landmarks`` would).

    A detection in a brightened dim frame (``det.brightened``) is framed with
    :data:`DIM_DETECTION_EXTENT` and :data:`DIM_DETECTION_DROP`, any other with
    :data:`DETECTION_EXTENT` and :data:`DETECTION_DROP`.
    """
    cx, cy = det.centre
    side = det.side
    extent, drop = (
        (DIM_DETECTION_EXTENT, DIM_DETECTION_DROP)
        if det.brightened
        else (DETECTION_EXTENT, DETECTION_DROP)
    )
    return Box(cx, cy + drop * side, max(side * extent * box_scale, 1.0))
