"""One frame through the teacher: landmarks by flip test-time augmentation, and a score.

The teacher runs on the frame and on its mirror image. The mirror's mesh is mapped to REP-155
70 points and mirrored back with ``REP155_70.flip`` (:func:`flip_landmarks`); the two estimates
should agree. Their disagreement, the mean point distance divided by the inter-ocular distance
(an NME between the two passes, ``flip_nme``), measures how sure the teacher is:

* ``consistency = clip(1 - flip_nme / FLIP_NME_AT_ZERO, 0, 1)`` (1: identical, 0: 15 % of the
  inter-ocular distance apart or worse);
* ``detection`` = the face detector's score, the smaller of the two passes;
* ``score = min(detection, consistency)``, in ``[0, 1]``; 0 when either pass finds no face.

The landmarks are the mean of the two estimates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from facealign_ros.face.landmarks import REP155_70, flip_landmarks, inter_ocular
from training.label.mapping import mesh_to_rep155
from training.label.teacher import TeacherReply

FLIP_NME_AT_ZERO = 0.15
"""Flip disagreement (fraction of the inter-ocular distance) at which consistency reaches 0."""


class Teacher(Protocol):
    """What the labeller needs from a teacher (:class:`~.teacher.TeacherProcess` or a fake)."""

    def infer(self, rgb: np.ndarray) -> TeacherReply:
        """Mesh and detector score for one ``(H, W, 3)`` uint8 RGB image."""
        ...


@dataclass(frozen=True)
class FrameLabel:
    """The teacher's label of one frame.

    Attributes:
        points: ``(70, 2)`` float64 REP-155 landmarks in pixels (pixel-centre convention); NaN
            where no face was found.
        score: frame score in ``[0, 1]`` (see the module docstring).
        detection: detector score, the smaller of the two passes.
        flip_nme: disagreement of the two passes / inter-ocular distance; NaN without a face.
        reason: why the score is 0 (``""`` when there is a face in both passes).
    """

    points: np.ndarray
    score: float
    detection: float
    flip_nme: float
    reason: str = ""


def no_face(reason: str) -> FrameLabel:
    """A label without landmarks (score 0)."""
    return FrameLabel(np.full((REP155_70.n_points, 2), np.nan), 0.0, 0.0, float("nan"), reason)


def flip_nme(points: np.ndarray, mirrored_back: np.ndarray) -> float:
    """Mean distance of two ``(70, 2)`` estimates over the inter-ocular distance of their mean."""
    mean = (points + mirrored_back) / 2
    iod = float(inter_ocular(mean, REP155_70))
    if not iod > 1e-6:
        return float("inf")
    return float(np.mean(np.linalg.norm(points - mirrored_back, axis=1)) / iod)


def frame_score(detection: float, disagreement: float) -> float:
    """``min(detection, consistency)`` (see the module docstring), in ``[0, 1]``."""
    consistency = float(np.clip(1.0 - disagreement / FLIP_NME_AT_ZERO, 0.0, 1.0))
    return float(min(np.clip(detection, 0.0, 1.0), consistency))


def label_frame(teacher: Teacher, rgb: np.ndarray) -> FrameLabel:
    """Run ``teacher`` on a ``(H, W, 3)`` uint8 frame and its mirror; see the module docstring."""
    width = rgb.shape[1]
    direct = teacher.infer(rgb)
    if direct.mesh is None:
        return no_face(direct.error or "no face")
    mirror = teacher.infer(np.ascontiguousarray(rgb[:, ::-1]))
    points = mesh_to_rep155(direct.mesh)
    if mirror.mesh is None:
        reason = mirror.error or "no face in the mirrored frame"
        return FrameLabel(points, 0.0, 0.0, float("nan"), reason)
    back = flip_landmarks(mesh_to_rep155(mirror.mesh), width, REP155_70)
    disagreement = flip_nme(points, back)
    detection = min(direct.score, mirror.score)
    return FrameLabel((points + back) / 2, frame_score(detection, disagreement), detection,
                      disagreement)  # fmt: skip
