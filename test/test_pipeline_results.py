"""FaceResult -> REP-155 / ROS messages, checked against the rosbags typestore definitions."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_ros.bag import get_typestore, msg_class
from facealign_ros.face.pose import HeadPose, euler_to_matrix, mean_face_68
from facealign_ros.messages import landmarks_from_msg, quat_to_matrix, stamp_ns
from facealign_ros.pipeline import FaceResult
from facealign_ros.results import (
    HEAD_TO_FACE,
    TYPES,
    face_transform,
    result_to_messages,
)

STAMP = 1_700_000_000_123_456_789


def result(face: bool = True, pose: bool = True) -> FaceResult:
    if not face:
        return FaceResult.no_face(STAMP, "events", 346, 260, "cam")
    pts = np.c_[np.linspace(100, 200, 70), np.linspace(50, 150, 70)]
    conf = np.linspace(0, 1, 70)
    hp = HeadPose(euler_to_matrix(0.2, -0.1, 0.05), np.array([0.01, -0.02, 0.6]), 1.0, 51)
    return FaceResult(STAMP, "f0007", pts, conf, (95.0, 45.0, 205.0, 155.0),
                      hp if pose else None, "fused", 346, 260, "cam", 3.0, 2.0)  # fmt: skip


def serialise(out) -> None:
    store = get_typestore()
    raw = store.serialize_cdr(out.msg, out.typename)
    assert store.deserialize_cdr(raw, out.typename) is not None


def test_all_topics_and_stamps():
    outs = result_to_messages(msg_class, result())
    topics = [o.topic for o in outs]
    assert topics == [
        "/humans/faces/tracked", "/humans/faces/f0007/roi", "/humans/faces/f0007/landmarks",
        "/facealign/landmarks", "/facealign/head_pose", "/tf",
    ]  # fmt: skip
    for o in outs:
        assert o.typename == TYPES[o.kind]
        assert o.msg.__msgtype__ == o.typename  # rosbags class of exactly that type
        serialise(o)
        stamped = o.msg.transforms[0] if o.kind == "tf" else o.msg
        assert stamp_ns(stamped) == STAMP and stamped.header.frame_id == "cam"
    assert list(outs[0].msg.ids) == ["f0007"]


def test_landmarks_normalised_with_confidence():
    outs = {o.kind: o.msg for o in result_to_messages(msg_class, result())}
    lm = outs["landmarks"]
    assert len(lm.landmarks) == 70 and (lm.width, lm.height) == (346, 260)
    u = np.array([(p.x, p.y) for p in lm.landmarks])
    assert np.allclose(u[0], [(100 + 0.5) / 346, (50 + 0.5) / 260], atol=1e-6)
    xy, c = landmarks_from_msg(lm)
    assert np.allclose(xy, result().landmarks, atol=1e-3)
    assert np.allclose(c, np.linspace(0, 1, 70), atol=1e-6)
    roi = outs["roi"]
    assert np.isclose(roi.xmin, 95 / 346, atol=1e-6) and np.isclose(roi.ymax, 155 / 260, atol=1e-6)
    assert np.isclose(roi.c, 0.5, atol=1e-6)


def test_no_face_publishes_only_an_empty_id_list():
    outs = result_to_messages(msg_class, result(face=False))
    assert [o.kind for o in outs] == ["tracked"] and list(outs[0].msg.ids) == []
    outs = result_to_messages(msg_class, result(pose=False))
    assert "head_pose" not in {o.kind for o in outs} and "tf" not in {o.kind for o in outs}


def test_tf_face_frame_follows_rep155():
    outs = {o.kind: o.msg for o in result_to_messages(msg_class, result())}
    tf = outs["tf"].transforms[0]
    assert tf.child_frame_id == "face_f0007"
    q = tf.transform.rotation
    R = quat_to_matrix(np.array([q.x, q.y, q.z, q.w]))
    # frontal face (R_head = I): x_face points back at the camera, z_face up (camera -y)
    Rf, t = face_transform(np.eye(3), np.zeros(3))
    assert np.allclose(Rf[:, 0], [0, 0, -1]) and np.allclose(Rf[:, 2], [0, -1, 0])
    assert np.allclose(Rf[:, 1], [1, 0, 0]) and np.isclose(np.linalg.det(HEAD_TO_FACE), 1.0)
    assert np.allclose(t, mean_face_68()[27])
    hp = result().pose
    assert np.allclose(R, hp.rotation @ HEAD_TO_FACE, atol=1e-6)


@pytest.mark.parametrize("kind", ["roi", "face_landmarks"])
def test_per_face_topic_names(kind):
    outs = {o.kind: o for o in result_to_messages(msg_class, result(), faces_ns="/x/faces")}
    assert outs[kind].topic.startswith("/x/faces/f0007/")
