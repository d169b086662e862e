"""FaceResult -> the messages the node publishes (and replay writes), via a message-class factory.

Per result (every header stamp = the stamp of the input answered, ``result.stamp_ns``):

========================================  ===================================  ================
topic                                     type                                 when
========================================  ===================================  ================
``/humans/faces/tracked``                 ``hri_msgs/msg/IdsList``             always
``/humans/faces/<id>/roi``                ``hri_msgs/msg/NormalizedRegionOfInterest2D``  face
``/humans/faces/<id>/landmarks``          ``hri_msgs/msg/FacialLandmarks``     face
``<private>/landmarks``                   ``hri_msgs/msg/FacialLandmarks``     face
``<private>/head_pose``                   ``geometry_msgs/msg/PoseStamped``    face with a pose
``/tf``                                   ``tf2_msgs/msg/TFMessage``           face with a pose
========================================  ===================================  ================

``<private>`` is the node's namespace (``~``) live and ``/facealign`` in replayed bags. Landmarks
are normalised to ``[0, 1]`` of the event sensor, ``c`` = per-landmark confidence. The head pose
is the head frame of :mod:`facealign_ros.face.pose` (same convention as the synthetic ground
truth). The TF frame ``face_<id>`` follows REP-155 (ROS4HRI): origin at the sellion (the nose
bridge between the eyes), x forward out of the face, y to the face's left, z up; parent: the
camera optical frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from facealign_ros.face.pose import mean_face_68
from facealign_ros.messages import MsgFactory, header, landmarks_to_msg, matrix_to_quat, pose_to_msg
from facealign_ros.pipeline.result import FaceResult

FACES_NS = "/humans/faces"
REPLAY_PRIVATE_NS = "/facealign"
TYPES = {
    "tracked": "hri_msgs/msg/IdsList",
    "roi": "hri_msgs/msg/NormalizedRegionOfInterest2D",
    "face_landmarks": "hri_msgs/msg/FacialLandmarks",
    "landmarks": "hri_msgs/msg/FacialLandmarks",
    "head_pose": "geometry_msgs/msg/PoseStamped",
    "tf": "tf2_msgs/msg/TFMessage",
}
"""Message type of each output kind."""

HEAD_TO_FACE = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
"""Columns: the REP-155 face axes (x forward, y left, z up) in the head frame (x to the
subject's left, y down, z into the head)."""
SELLION_IBUG = 27
"""iBUG index of the top of the nose bridge, used as the sellion."""


@cache
def sellion_in_head() -> np.ndarray:
    """``(3,)`` sellion of the mean face in the head frame, metres."""
    return np.array(mean_face_68()[SELLION_IBUG], dtype=np.float64)


@dataclass(frozen=True)
class OutputMessage:
    """One message to publish.

    Attributes:
        kind: a key of :data:`TYPES`.
        topic: full topic name (per-face ones include the id).
        typename: ``pkg/msg/Name``.
        msg: the message.
    """

    kind: str
    topic: str
    typename: str
    msg: Any


def face_frame(face_id: str) -> str:
    """TF frame of a face (REP-155): ``face_<id>``."""
    return f"face_{face_id}"


def face_topics(face_id: str, faces_ns: str = FACES_NS) -> dict[str, str]:
    """Per-face topics of ``face_id``: ``{"roi": ..., "face_landmarks": ...}``."""
    return {"roi": f"{faces_ns}/{face_id}/roi", "face_landmarks": f"{faces_ns}/{face_id}/landmarks"}


def face_transform(rotation: np.ndarray, translation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head pose (head frame in the camera) -> REP-155 face frame in the camera: ``(R, t)``."""
    R = np.asarray(rotation, dtype=np.float64)
    t = np.asarray(translation, dtype=np.float64).reshape(3)
    return R @ HEAD_TO_FACE, R @ sellion_in_head() + t


def roi_to_msg(factory: MsgFactory, result: FaceResult) -> Any:
    """``hri_msgs/NormalizedRegionOfInterest2D`` of a result with a face (edges normalised)."""
    if result.roi is None:
        raise ValueError("roi_to_msg: the result has no face")
    x0, y0, x1, y1 = result.roi
    w, h = result.width, result.height
    nx0, nx1 = (float(np.clip(v / w, 0.0, 1.0)) for v in (x0, x1))
    ny0, ny1 = (float(np.clip(v / h, 0.0, 1.0)) for v in (y0, y1))
    return factory(TYPES["roi"])(
        header=header(factory, result.stamp_ns, result.frame_id),
        xmin=nx0,
        ymin=ny0,
        xmax=nx1,
        ymax=ny1,
        c=float(np.clip(result.mean_confidence, 0.0, 1.0)),
    )


def tf_to_msg(factory: MsgFactory, result: FaceResult) -> Any:
    """``tf2_msgs/TFMessage`` with the ``face_<id>`` transform of a result with a pose."""
    if result.pose is None or result.face_id is None:
        raise ValueError("tf_to_msg: the result has no pose")
    R, t = face_transform(result.pose.rotation, result.pose.translation)
    qx, qy, qz, qw = (float(v) for v in matrix_to_quat(R))
    transform = factory("geometry_msgs/msg/Transform")(
        translation=factory("geometry_msgs/msg/Vector3")(
            x=float(t[0]), y=float(t[1]), z=float(t[2])
        ),
        rotation=factory("geometry_msgs/msg/Quaternion")(x=qx, y=qy, z=qz, w=qw),
    )
    stamped = factory("geometry_msgs/msg/TransformStamped")(
        header=header(factory, result.stamp_ns, result.frame_id),
        child_frame_id=face_frame(result.face_id),
        transform=transform,
    )
    return factory(TYPES["tf"])(transforms=[stamped])


def result_to_messages(
    factory: MsgFactory,
    result: FaceResult,
    private_ns: str = REPLAY_PRIVATE_NS,
    faces_ns: str = FACES_NS,
    publish_tf: bool = True,
) -> list[OutputMessage]:
    """All messages of one result, in publishing order (tracked ids first).

    Args:
        factory: message-class factory (``facealign_ros.bag.msg_class`` or the node's).
        result: the pipeline's answer.
        private_ns: namespace of ``landmarks`` and ``head_pose`` (``~`` in the node).
        faces_ns: REP-155 faces namespace.
        publish_tf: include the ``face_<id>`` transform.
    """
    stamp, frame = result.stamp_ns, result.frame_id
    ids = [result.face_id] if result.face_id is not None else []
    out = [
        OutputMessage(
            "tracked",
            f"{faces_ns}/tracked",
            TYPES["tracked"],
            factory(TYPES["tracked"])(header=header(factory, stamp, frame), ids=ids),
        )
    ]
    if result.face_id is None:
        return out
    topics = face_topics(result.face_id, faces_ns)
    lm = landmarks_to_msg(
        factory, result.landmarks, result.confidence, result.width, result.height, stamp, frame
    )
    out.append(OutputMessage("roi", topics["roi"], TYPES["roi"], roi_to_msg(factory, result)))
    out.append(OutputMessage("face_landmarks", topics["face_landmarks"], TYPES["landmarks"], lm))
    out.append(OutputMessage("landmarks", f"{private_ns}/landmarks", TYPES["landmarks"], lm))
    if result.pose is not None:
        pose = pose_to_msg(factory, result.pose.rotation, result.pose.translation, stamp, frame)
        out.append(OutputMessage("head_pose", f"{private_ns}/head_pose", TYPES["head_pose"], pose))
        if publish_tf:
            out.append(OutputMessage("tf", "/tf", TYPES["tf"], tf_to_msg(factory, result)))
    return out
