"""Scene-level geometry, variety, light and expressions of the synthetic engine (training.synth)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from facealign_ros.face.pose import euler_to_matrix
from training.synth.camera import LIGHT_LEVELS, RGBCameraConfig, capture
from training.synth.expression import EXPRESSIONS, ExpressionRig, ExpressionTrack, landmarks70
from training.synth.occluders import CameraShake, Glasses, Sprite
from training.synth.render import PinholeCamera, project_points
from training.synth.scene import Scene, SceneConfig

cv2 = pytest.importorskip("cv2")

BASE = SceneConfig(seed=2, seconds=0.2, head="ellipsoid", clutter=1, occluder_prob=0.0)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1))))


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_head_pose_round_trips_through_pnp(seed: int) -> None:
    scene = Scene(dataclasses.replace(BASE, seed=seed, motion="fast"))
    for k in (2, 5):
        iv = scene.interval(k)
        pts3d = landmarks70(scene.rig, scene.expressions.weights(iv.stamp_ns * 1e-9))
        uv = iv.uv + np.random.default_rng(seed).normal(0, 0.05, iv.uv.shape)  # sub-px noise
        ok, rvec, tvec = cv2.solvePnP(pts3d, uv, scene.camera.K, None)
        assert ok
        rot, _ = cv2.Rodrigues(rvec)
        assert _angle_deg(rot, iv.rotation) < 1.0
        assert np.linalg.norm(tvec.ravel() - iv.translation) < 0.01
    scene.close()


def test_interval_outputs_are_consistent() -> None:
    cfg = BASE
    scene = Scene(cfg)
    iv = scene.interval(3)
    ends = cfg.frame_end_ns
    assert iv.times_ns[0] == ends[2] and iv.times_ns[-1] == ends[3]
    assert np.all(np.diff(iv.times_ns) > 0)
    assert iv.luminance.shape == (len(iv.times_ns), cfg.height, cfg.width)
    assert ends[3] - int(iv.exposure_s * 1e9) <= iv.stamp_ns <= ends[3]
    # the 1 kHz ground truth is on the ms grid inside the interval, equal to a direct projection
    assert np.all(iv.hf_times_ns % 1_000_000 == 0)
    assert np.all((iv.hf_times_ns > ends[2]) & (iv.hf_times_ns <= ends[3]))
    assert iv.hf_uv.shape == (len(iv.hf_times_ns), 70, 2)
    np.testing.assert_allclose(scene.landmarks_px(np.array([iv.stamp_ns * 1e-9]))[0], iv.uv)
    # GT at the frame stamp is the projection of the posed 3D points
    pts = landmarks70(scene.rig, scene.expressions.weights(iv.stamp_ns * 1e-9))
    uv, _ = project_points(pts, iv.rotation, iv.translation, scene.camera)
    np.testing.assert_allclose(uv, iv.uv, atol=1e-9)
    scene.close()


def test_adaptive_sampling_is_dense_only_when_moving() -> None:
    cfg = dataclasses.replace(BASE, motion="fast", seconds=1.0, clutter=0)
    dense = Scene(dataclasses.replace(cfg, max_px=0.5))
    ends = cfg.frame_end_ns
    moves = [np.abs(dense._tracked(int(ends[k])) - dense._tracked(int(ends[k - 1]))).max()
             for k in range(1, cfg.n_frames + 1)]  # fmt: skip
    fast, slow = int(np.argmax(moves)) + 1, int(np.argmin(moves)) + 1
    assert moves[fast - 1] > 4 * moves[slow - 1]
    iv_fast, iv_slow = dense.interval(fast), dense.interval(slow)
    assert len(iv_fast.times_ns) > len(iv_slow.times_ns) + 5
    pts = np.stack([dense._tracked(int(t)) for t in iv_fast.times_ns])
    assert np.linalg.norm(np.diff(pts, axis=0), axis=-1).max() < 0.5 * 1.5


def test_low_light_lowers_rgb_snr_while_events_keep_edges() -> None:
    snr, edge_ratio = {}, {}
    for light in ("normal", "dark"):
        cfg = dataclasses.replace(BASE, light=light, motion="fast", seed=5)
        from training.synth.engine import generate

        outs = list(generate(cfg))
        iv = outs[-1].interval
        rgb_cfg = RGBCameraConfig(fps=cfg.fps, max_exposure_s=0.9 / cfg.fps)
        rng = np.random.default_rng(0)
        shots = np.stack([
            capture(iv.irradiance[None], iv.exposure_s, iv.gain, LIGHT_LEVELS[light], rng,
                    rgb_cfg).astype(np.float32)
            for _ in range(6)
        ])  # fmt: skip
        snr[light] = float(shots.mean() / shots.std(0).mean())
        # pixels the moving head crosses (the face/background edge) versus the rest
        scene = Scene(cfg)
        a, _, _ = scene.render(outs[2].interval.times_ns[0] * 1e-9)
        b, _, _ = scene.render(iv.times_ns[-1] * 1e-9)
        diff = np.abs(np.log(a.mean(-1) + 1e-3) - np.log(b.mean(-1) + 1e-3))
        edge = diff > 0.5
        ev = np.concatenate([o.events for o in outs[3:]])
        counts = np.zeros(edge.shape)
        np.add.at(counts, (ev["y"], ev["x"]), 1)
        edge_ratio[light] = counts[edge].mean() / max(counts[~edge].mean(), 1e-9)
        scene.close()
    assert snr["dark"] < 0.5 * snr["normal"]
    assert edge_ratio["normal"] > 5 and edge_ratio["dark"] > 3


def test_expressions_move_the_right_landmarks() -> None:
    from training.synth.assets import ellipsoid_head

    rig = ExpressionRig.build(ellipsoid_head())
    w = np.zeros(len(EXPRESSIONS))
    w[EXPRESSIONS.index("mouth_open")] = 1.0
    moved = rig.landmarks(w) - rig.landmarks(np.zeros_like(w))
    assert moved[57, 1] > 0.008 and abs(moved[19, 1]) < moved[57, 1] / 3  # lip down, brow ~still
    w[:] = 0
    w[EXPRESSIONS.index("blink_right")] = 1.0
    lm = rig.landmarks(w)
    base = rig.landmarks(np.zeros_like(w))
    gap = lambda x: np.linalg.norm(x[[41, 40]] - x[[37, 38]], axis=1).mean()  # noqa: E731
    assert gap(lm) < 0.4 * gap(base)
    mesh = rig.apply(w)
    assert mesh.faces is rig.mesh.faces and not np.array_equal(mesh.vertices, rig.mesh.vertices)
    track = ExpressionTrack(5.0, seed=1, blink_rate_hz=2.0)
    ws = track.weights(np.linspace(0, 5, 5001))
    assert ws.shape == (5001, len(EXPRESSIONS)) and ws[:, 2].max() > 0.7
    assert np.abs(np.diff(ws, axis=0)).max() < 0.1  # continuous at 1 ms steps


def test_occluders_hide_landmarks() -> None:
    cfg = dataclasses.replace(BASE, seed=7, occluder_prob=1.0)
    scene = Scene(cfg)
    sprite = scene.occluders[0]
    centre, _ = project_points(np.zeros((1, 3)), *scene.pose(0.1), scene.camera)
    scene.occluders[0] = dataclasses.replace(sprite, start=tuple(centre[0]), velocity=(0, 0),
                                             size_px=(200.0, 200.0), spin_dps=0.0)  # fmt: skip
    _, _, vis = scene.render(0.1)
    assert not vis.any()
    scene.occluders.clear()
    _, _, vis = scene.render(0.1)
    assert vis.sum() > 50
    scene.close()


def test_glasses_sit_in_front_of_the_eyes_and_shake_is_small() -> None:
    from training.synth.assets import ellipsoid_head

    lm = ellipsoid_head().landmarks.copy()
    g = Glasses.random(lm, np.random.default_rng(0))
    assert g.rims.shape[0] == 2 and np.all(g.rims[..., 2] < lm[36:48, 2].min())
    cam = PinholeCamera()
    img = np.zeros((cam.height, cam.width, 3), np.float32)
    occ = np.zeros(img.shape[:2], np.float32)
    depth = np.full(img.shape[:2], np.inf, np.float32)
    g.draw(img, occ, depth, euler_to_matrix(0.0, 0.0, 0.0), np.array([0, 0, 0.5]), cam)
    assert occ.max() > 0.9 and img.max() > 0
    shake = CameraShake(0.2, seed=1).rotation(np.linspace(0, 2, 50))
    assert max(_angle_deg(r, np.eye(3)) for r in shake) < 1.0
    s = Sprite.random(cam.width, cam.height, np.random.default_rng(3))
    canvas = np.zeros_like(img)
    s.draw(canvas, 0.0)
    assert canvas.any() or not (0 <= s.start[0] < cam.width)


def test_a_scene_without_its_face_keeps_everything_else() -> None:
    cfg = dataclasses.replace(BASE, clutter=2, seed=5)
    with_face, empty = Scene(cfg), Scene(dataclasses.replace(cfg, face=False))
    t = 0.1
    img_face, uv, vis = with_face.render(t)
    img_empty, uv_empty, vis_empty = empty.render(t)
    assert vis.any() and not vis_empty.any() and uv_empty.shape == uv.shape
    assert empty.head_pose(t) is None and with_face.head_pose(t) is not None
    # the head's pixels differ, the background far from it is the same image
    x0, y0 = np.floor(uv.min(0)).astype(int) - 40
    x1, y1 = np.ceil(uv.max(0)).astype(int) + 40
    face_area = np.zeros(img_face.shape[:2], bool)
    face_area[max(y0, 0) : y1, max(x0, 0) : x1] = True
    diff = np.abs(img_face - img_empty).max(axis=2)
    assert diff[face_area].mean() > 0.02
    np.testing.assert_allclose(img_face[~face_area], img_empty[~face_area], atol=1e-6)
    iv = empty.interval(2)
    assert iv.rotation is None and not iv.visible.any()
    with_face.close()
    empty.close()
