"""Head trajectories (training.synth.motion)."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_ros.face.pose import euler_to_matrix, matrix_to_euler
from training.synth.motion import HeadTrajectory, MotionConfig


def test_euler_round_trip_and_orthonormal() -> None:
    rng = np.random.default_rng(0)
    ang = rng.uniform([-1.5, -1.2, -3], [1.5, 1.2, 3], size=(100, 3))
    rot = euler_to_matrix(*ang.T)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), rot.shape),
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(rot), ang, atol=1e-9)


@pytest.mark.parametrize("motion", ["slow", "fast"])
def test_trajectory_bounds_and_smoothness(motion: str) -> None:
    cfg = MotionConfig.preset(motion)
    traj = HeadTrajectory(20.0, seed=1, config=cfg)
    t = np.arange(0.0, 20.0, 0.001)
    st = traj.state(t)
    deg = np.degrees(st[:, :3])
    assert np.all(np.abs(deg) <= [cfg.yaw_deg, cfg.pitch_deg, cfg.roll_deg])
    assert cfg.distance_m[0] <= st[:, 5].min() and st[:, 5].max() <= cfg.distance_m[1]
    speed = np.linalg.norm(np.diff(deg, axis=0), axis=1) / 0.001
    assert speed.max() < cfg.saccade_max_dps * 1.2  # continuous, bounded angular speed
    assert np.ptp(deg[:, 0]) > 20  # it actually moves


def test_fast_motion_has_saccades_and_slow_has_still_periods() -> None:
    t = np.arange(0.0, 30.0, 0.001)
    fast = HeadTrajectory(30.0, seed=2, config=MotionConfig.preset("fast")).state(t)
    slow = HeadTrajectory(30.0, seed=2, config=MotionConfig.preset("slow")).state(t)
    v_fast = np.linalg.norm(np.degrees(np.diff(fast[:, :3], axis=0)), axis=1) / 0.001
    v_slow = np.linalg.norm(np.degrees(np.diff(slow[:, :3], axis=0)), axis=1) / 0.001
    assert v_fast.max() > 200  # saccade-like turns
    assert (v_slow < 5).mean() > 0.2  # near-static holds
    assert np.median(v_fast) > np.median(v_slow)


def test_evaluable_at_any_time_and_seeded() -> None:
    a = HeadTrajectory(5.0, seed=7)
    b = HeadTrajectory(5.0, seed=7)
    c = HeadTrajectory(5.0, seed=8)
    ts = np.array([0.0, 0.123456, 2.5, 4.999])
    np.testing.assert_array_equal(a.state(ts), b.state(ts))
    assert not np.allclose(a.state(ts), c.state(ts))
    np.testing.assert_allclose(a.state(ts[1]), a.state(ts)[1])
    rot, trans = a.pose(ts)
    assert rot.shape == (4, 3, 3) and trans.shape == (4, 3)
    st = a.state(ts)
    np.testing.assert_allclose(trans[:, 0], st[:, 3] * st[:, 5])
    np.testing.assert_allclose(matrix_to_euler(rot), st[:, :3], atol=1e-9)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        HeadTrajectory(-1.0)
    with pytest.raises(ValueError):
        MotionConfig.preset("medium")
