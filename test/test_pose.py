"""Head pose by PnP: known poses round-trip, Euler conventions, degenerate input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facealign_ros.face.pose import (
    default_intrinsics,
    estimate_pose,
    euler_to_matrix,
    matrix_to_euler,
    mean_face_68,
    project_points,
    rotation_error_deg,
    undistort_points,
)

K = default_intrinsics(346, 260)


def project(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    cam = mean_face_68() @ R.T + t
    uv = cam @ K.T
    return uv[:, :2] / uv[:, 2:]


def test_mean_face_is_metric_and_frontal() -> None:
    face = mean_face_68()
    assert face.shape == (68, 3) and not face.flags.writeable
    assert np.linalg.norm(face[45] - face[36]) == pytest.approx(0.095, abs=1e-4)
    assert face[30, 2] < face[36, 2]  # the nose tip is nearer the camera than the eye corners
    assert face[8, 1] > face[30, 1] > face[27, 1]  # chin below nose tip below nose bridge


@settings(max_examples=40, deadline=None)
@given(st.floats(-60, 60), st.floats(-40, 40), st.floats(-30, 30))
def test_known_pose_round_trip(yaw: float, pitch: float, roll: float) -> None:
    R = euler_to_matrix(*np.radians([yaw, pitch, roll]))
    t = np.array([0.02, -0.01, 0.6])
    pose = estimate_pose(project(R, t), K)
    assert pose is not None
    assert rotation_error_deg(pose.rotation, R) < 0.5
    assert np.allclose(pose.translation, t, atol=5e-3)
    assert pose.reprojection_px < 0.05
    assert np.allclose(pose.euler_deg, [yaw, pitch, roll], atol=0.5)


def test_noisy_landmarks_and_confidence_mask() -> None:
    rng = np.random.default_rng(0)
    R = euler_to_matrix(*np.radians([25.0, -10.0, 5.0]))
    t = np.array([0.0, 0.0, 0.7])
    pts = project(R, t) + rng.normal(0, 0.7, (68, 2))
    conf = np.ones(68)
    pts[48:60] += 40.0  # a wildly wrong mouth, flagged as not confident
    conf[48:60] = 0.0
    pose = estimate_pose(pts, K, conf)
    assert pose is not None and rotation_error_deg(pose.rotation, R) < 3.0
    again = estimate_pose(pts, K, conf, prior=pose)
    assert again is not None and rotation_error_deg(again.rotation, R) < 3.0


def test_degenerate_inputs() -> None:
    assert estimate_pose(np.full((70, 2), np.nan), K) is None
    assert estimate_pose(np.zeros((68, 2)), K, confidence=np.zeros(68)) is None
    with pytest.raises(ValueError, match="68 or 70"):
        estimate_pose(np.zeros((5, 2)), K)


@settings(max_examples=50, deadline=None)
@given(st.floats(-3.1, 3.1), st.floats(-1.5, 1.5), st.floats(-3.1, 3.1))
def test_euler_round_trip(yaw: float, pitch: float, roll: float) -> None:
    R = euler_to_matrix(yaw, pitch, roll)
    assert np.allclose(euler_to_matrix(*matrix_to_euler(R)), R, atol=1e-9)


@pytest.mark.parametrize(
    "distortion",
    [None, ("plumb_bob", np.array([-0.3, 0.1, 0.002, -0.001, 0.0])),
     ("rational_polynomial", np.array([-0.2, 0.05, 0.0, 0.0, 0.0, 0.01, 0.0, 0.0])),
     ("equidistant", np.array([0.05, -0.02, 0.0, 0.0]))],
)  # fmt: skip
def test_project_points_is_the_inverse_of_undistort_points(distortion) -> None:
    R, t = euler_to_matrix(*np.radians([30.0, -15.0, 8.0])), np.array([0.1, 0.05, 0.5])
    px = project_points(mean_face_68(), R, t, K, distortion)
    assert px.shape == (68, 2)
    assert np.allclose(project_points(mean_face_68(), R, t, K.astype(np.float32), distortion), px)
    if distortion is None:
        assert np.allclose(px, project(R, t))  # the ideal pinhole
    else:
        assert np.abs(px - project(R, t)).max() > 1.0  # the lens moves the points
        assert np.allclose(undistort_points(px, K, distortion), project(R, t), atol=1e-3)
