"""Face boxes for SSMER windows from a face detector on the recording's RGB frames.

Unlabelled recordings have no face boxes. The label-free default, the event activity box
(:func:`training.ssmer.sources.activity_box`), is centred 0.28 box sides off the face
(median) and 1.3x its size, so pretraining crops do not look like the crops fine-tuning and the
node feed the encoder (the face box). A rig with an RGB camera registered to the event sensor
(what the node and the training data assume) has a better label-free box: BlazeFace's detection
in the RGB frame, framed as the node frames it (:func:`~facealign_ros.pipeline.detection.
box_from_detection`): 0.036 sides off, side 1.006x (median, 20 synthetic bags, all light levels;
``python -m training.bench.activity_box --bags 'data/synth/train_10[0-1]*' --detector``).

:class:`DetectorBoxes` keeps the recent detections of *one* recording in ROS time (one object
per recording: recordings read side by side often share ROS times); a window takes
the latest detection at most ``max_age_ms`` before its end, else (dark frame, no face, no RGB)
it falls back to the activity box.
"""

from __future__ import annotations

import collections

import numpy as np

from facealign_ros.face.crop import Box
from facealign_ros.face.detector import BlazeFaceDetector

BOX_SOURCES = ("activity", "detector")
"""Where SSMER windows take their box: the event activity, or the RGB face detector."""


class DetectorBoxes:
    """Latest BlazeFace boxes of one recording, looked up by window end time.

    Args:
        detector: the face detector (may be shared by the recordings a worker reads; the
            detections may not).
        box_scale: crop side = the detection's face extent x this (the CMFA input's
            ``box_scale``).
        max_age_ms: a detection older than this at the window end is not used, ms.
        min_side: boxes smaller than this (px) are ignored.
    """

    def __init__(
        self,
        detector: BlazeFaceDetector,
        box_scale: float,
        max_age_ms: float = 50.0,
        min_side: float = 16.0,
    ) -> None:
        self.detector = detector
        self.box_scale = float(box_scale)
        self.max_age_ns = int(round(max_age_ms * 1e6))
        self.min_side = float(min_side)
        self._recent: collections.deque[tuple[int, Box]] = collections.deque(maxlen=8)

    def reset(self) -> None:
        """Forget the detections (a new recording starts)."""
        self._recent.clear()

    def observe(self, stamp_ns: int, rgb: np.ndarray) -> Box | None:
        """Detect in one RGB frame (ROS time ``stamp_ns``); returns the best box or None."""
        from facealign_ros.pipeline.detection import box_from_detection

        found = self.detector.detect(rgb)
        if not found:
            return None
        box = box_from_detection(found[0], self.box_scale)
        if box.side < self.min_side:
            return None
        self._recent.append((int(stamp_ns), box))
        return box

    def box_at(self, ros_ns: int) -> Box | None:
        """The latest detection at or before ``ros_ns`` and at most ``max_age_ms`` old."""
        for stamp, box in reversed(self._recent):
            if stamp <= ros_ns:
                return box if ros_ns - stamp <= self.max_age_ns else None
        return None
