"""What the pipeline answers: one :class:`FaceResult` per target stamp."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facealign_ros.face.pose import HeadPose


@dataclass(frozen=True)
class DebugFrame:
    """Inputs of one answer, kept only when asked for (debug image, demo video).

    Attributes:
        events: the event window (ROS-time ``t``), or None.
        rgb: ``(H, W, 3)`` uint8 frame in sensor geometry, or None.
        crop: the crop box used, or None.
    """

    events: np.ndarray | None
    rgb: np.ndarray | None
    crop: tuple[float, float, float] | None


@dataclass(frozen=True)
class FaceResult:
    """The answer for one input stamp.

    Attributes:
        stamp_ns: stamp of the input answered (image stamp, or event-grid stamp), ROS ns.
        face_id: REP-155 face id, or None when no face is tracked ("no face").
        landmarks: ``(70, 2)`` REP-155 landmarks, sensor pixels (NaN without a face).
        confidence: ``(70,)`` per-landmark confidence in ``[0, 1]`` (0 without a face).
        roi: face box ``(xmin, ymin, xmax, ymax)`` continuous pixel edges, or None.
        pose: head pose (head frame in the camera optical frame), or None.
        mode: inputs used: ``fused``, ``events``, ``rgb`` or ``none``.
        width: sensor width, px (normalises the REP-155 coordinates).
        height: sensor height, px.
        frame_id: camera optical frame of the inputs.
        latency_ms: wall time from the input's arrival to this result, ms.
        compute_ms: wall time spent computing this result, ms.
        detected: this frame started the track (a search found the face).
        debug: the inputs, when the pipeline keeps them.
    """

    stamp_ns: int
    face_id: str | None
    landmarks: np.ndarray
    confidence: np.ndarray
    roi: tuple[float, float, float, float] | None
    pose: HeadPose | None
    mode: str
    width: int
    height: int
    frame_id: str
    latency_ms: float
    compute_ms: float
    detected: bool = False
    debug: DebugFrame | None = None

    @property
    def has_face(self) -> bool:
        """True when a face is tracked in this result."""
        return self.face_id is not None

    @property
    def mean_confidence(self) -> float:
        """Mean landmark confidence (0 without a face)."""
        return float(np.mean(self.confidence)) if self.has_face else 0.0

    @classmethod
    def no_face(
        cls, stamp_ns: int, mode: str, width: int, height: int, frame_id: str, **kw: object
    ) -> FaceResult:
        """A result without a face (NaN landmarks, zero confidence)."""
        return cls(
            stamp_ns=int(stamp_ns),
            face_id=None,
            landmarks=np.full((70, 2), np.nan),
            confidence=np.zeros(70),
            roi=None,
            pose=None,
            mode=mode,
            width=int(width),
            height=int(height),
            frame_id=frame_id,
            latency_ms=float(kw.pop("latency_ms", 0.0)),  # type: ignore[arg-type]
            compute_ms=float(kw.pop("compute_ms", 0.0)),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )
