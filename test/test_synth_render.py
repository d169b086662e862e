"""Geometry and rendering (training.synth.render, raster, variety) on a procedural head."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_ros.face.pose import euler_to_matrix
from training.synth.assets import ellipsoid_head
from training.synth.render import (
    GLRenderer,
    NumbaRenderer,
    PinholeCamera,
    landmark_visibility,
    make_renderer,
    project_points,
)
from training.synth.variety import random_background, random_identity, rbf_deform

CAM = PinholeCamera()


def _gl_or_skip() -> GLRenderer:
    try:
        return GLRenderer(CAM)
    except Exception as exc:  # noqa: BLE001 - any context failure means no GL here
        pytest.skip(f"no EGL/OpenGL context: {exc}")


@pytest.mark.parametrize(
    ("point", "yaw_deg", "t", "expected"),
    [
        ((0.0, 0.0, 0.0), 0.0, (0.0, 0.0, 1.0), (CAM.cx, CAM.cy)),
        ((0.1, 0.0, 0.0), 0.0, (0.0, 0.0, 1.0), (CAM.cx + 25.0, CAM.cy)),
        ((0.0, -0.05, 0.0), 0.0, (0.0, 0.0, 0.5), (CAM.cx, CAM.cy - 25.0)),
        ((0.0, 0.0, 0.0), 0.0, (0.1, 0.2, 1.0), (CAM.cx + 25.0, CAM.cy + 50.0)),
        # yaw 90 deg turns head +z (back of the head) towards camera +x
        ((0.0, 0.0, 0.1), 90.0, (0.0, 0.0, 1.0), (CAM.cx + 25.0, CAM.cy)),
    ],
)
def test_known_pose_projects_to_known_points(point, yaw_deg, t, expected) -> None:
    rot = euler_to_matrix(np.radians(yaw_deg), 0.0, 0.0)
    uv, z = project_points(np.array([point]), rot, np.array(t), CAM)
    np.testing.assert_allclose(uv[0], expected, atol=1e-9)
    assert z[0] > 0


@pytest.mark.parametrize("backend", ["numba", "gl"])
def test_render_matches_projection(backend: str) -> None:
    r = _gl_or_skip() if backend == "gl" else NumbaRenderer(CAM)
    head = ellipsoid_head()
    rot, t = euler_to_matrix(0.3, -0.2, 0.1), np.array([0.02, -0.01, 0.5])
    bg = np.full((CAM.height, CAM.width, 3), 0.25, np.float32)
    out = r.render(head, rot, t, background=bg)
    assert out.image.shape == (CAM.height, CAM.width, 3) and out.image.dtype == np.float32
    face = out.alpha > 0.5
    # silhouette centre ~ projected centre; depth of the nearest point ~ z - radius
    rows, cols = np.nonzero(face)
    centre, _ = project_points(np.zeros((1, 3)), rot, t, CAM)
    assert np.hypot(cols.mean() - centre[0, 0], rows.mean() - centre[0, 1]) < 3.0
    assert 0.5 - 0.1 - 0.01 < out.depth[face].min() < 0.5 - 0.075 + 0.01
    assert np.all(np.isinf(out.depth[out.alpha == 0]))
    np.testing.assert_allclose(out.image[~face & (out.alpha == 0)], 0.25)
    # landmark pixels lie on the rendered face and the front landmarks are visible
    uv, z = project_points(head.landmarks, rot, t, CAM)
    vis = landmark_visibility(uv, z, out.depth, CAM.fx)
    assert vis.mean() > 0.7
    px = np.rint(uv[vis]).astype(int)
    cover = out.alpha[px[:, 1], px[:, 0]]
    assert np.all(cover > 0) and np.mean(cover == 1.0) > 0.9  # silhouette pixels: partial


def test_backends_agree() -> None:
    gl = _gl_or_skip()
    head = ellipsoid_head()
    rot, t = euler_to_matrix(-0.4, 0.1, 0.0), np.array([0.0, 0.0, 0.45])
    a, b = gl.render(head, rot, t), NumbaRenderer(CAM).render(head, rot, t)
    inter = np.logical_and(a.alpha > 0.5, b.alpha > 0.5).sum()
    union = np.logical_or(a.alpha > 0.5, b.alpha > 0.5).sum()
    assert inter / union > 0.98
    both = (a.alpha == 1) & (b.alpha == 1)
    assert np.abs(a.image[both] - b.image[both]).mean() < 0.01
    assert np.abs(a.depth[both] - b.depth[both]).max() < 2e-3


def test_self_occluded_landmarks_are_flagged() -> None:
    head = ellipsoid_head()
    r = NumbaRenderer(CAM)
    t = np.array([0.0, 0.0, 0.5])
    rot = euler_to_matrix(np.pi, 0.0, 0.0)  # the landmarks face away from the camera
    out = r.render(head, rot, t)
    uv, z = project_points(head.landmarks, rot, t, CAM)
    assert not landmark_visibility(uv, z, out.depth, CAM.fx).any()
    off = landmark_visibility(uv + 1000.0, z, out.depth, CAM.fx)  # outside the image
    assert not off.any()


def test_rendering_is_deterministic_and_variety_is_seeded() -> None:
    head = ellipsoid_head()
    r = make_renderer(CAM, "numba")
    a, b = (random_identity(head, np.random.default_rng(4)) for _ in range(2))
    c = random_identity(head, np.random.default_rng(5))
    assert np.array_equal(a.mesh.vertices, b.mesh.vertices) and a.tint == b.tint
    assert not np.array_equal(a.mesh.vertices, c.mesh.vertices)
    bg = random_background(CAM.height, CAM.width, np.random.default_rng(0))
    assert bg.shape == (CAM.height, CAM.width, 3) and bg.min() >= 0 and bg.max() <= 1
    rot, t = np.eye(3), np.array([0.0, 0.0, 0.5])
    img1 = r.render(a.mesh, rot, t, a.lighting, bg, a.tint).image
    img2 = r.render(b.mesh, rot, t, b.lighting, bg, b.tint).image
    assert img1.tobytes() == img2.tobytes()


def test_rbf_deformation_is_smooth_and_anchored() -> None:
    head = ellipsoid_head()
    disp = np.zeros((68, 3))
    disp[:, 0] = 0.004
    warped = rbf_deform(head, disp)
    moved = warped.landmarks - head.landmarks
    assert np.abs(moved[:, 0] - 0.004).max() < 0.0015  # smoothing fit, close to the target
    dv = np.linalg.norm(warped.vertices - head.vertices, axis=1)
    assert dv.max() < 0.0065
    back = head.vertices[:, 2] > 0.08  # far from every landmark: barely moves
    assert dv[back].max() < 0.001


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError):
        make_renderer(CAM, "vulkan")
