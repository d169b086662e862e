"""Metrics against hand-computed values: NME, FR@0.10, AUC@0.10, CED, pose MAE."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facealign_ros.face.landmarks import IBUG68
from training import metrics


def _three_samples() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two landmarks each; per-point errors (0.02, 0.04), (0.1, 0.3), (0.2, 0.2); norms 1, 2, 1."""
    gt = np.zeros((3, 2, 2))
    pred = gt.copy()
    pred[0, :, 0] = [0.02, 0.04]
    pred[1, :, 1] = [0.1, -0.3]
    pred[2] = [[0.12, 0.16], [-0.2, 0.0]]  # |(0.12, 0.16)| = 0.2
    return pred, gt, np.array([1.0, 2.0, 1.0])


def test_nme_fr_auc_known_answers() -> None:
    pred, gt, norm = _three_samples()
    nmes = metrics.nme_per_sample(pred, gt, norm)
    np.testing.assert_allclose(nmes, [0.03, 0.1, 0.2], atol=1e-15)
    assert metrics.failure_rate(nmes, 0.1) == pytest.approx(1 / 3)  # 0.1 itself is no failure
    # AUC@0.1 = mean(max(0, 1 - e / 0.1)) = (0.7 + 0 + 0) / 3
    assert metrics.auc(nmes, 0.1) == pytest.approx(0.7 / 3)
    summary = metrics.summarize(nmes)
    assert summary == pytest.approx({"count": 3.0, "nme": 0.11, "fr10": 1 / 3, "auc10": 0.7 / 3})


def test_auc_equals_integral_of_ced() -> None:
    nmes = np.array([0.0, 0.013, 0.05, 0.07, 0.099, 0.2, 0.5])
    x, y = metrics.ced_curve(nmes, 0.1, num=200_001)
    numeric = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x))) / 0.1
    assert metrics.auc(nmes, 0.1) == pytest.approx(numeric, abs=1e-5)


def test_ced_curve_steps() -> None:
    x, y = metrics.ced_curve(np.array([0.03, 0.1, 0.2]), 0.1, num=11)
    np.testing.assert_allclose(x, np.linspace(0, 0.1, 11))
    expected = [0, 0, 0, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 2 / 3]
    np.testing.assert_allclose(y, expected)


def test_interocular_and_interpupil_distances() -> None:
    gt = np.zeros((1, 68, 2))
    # right eye 36..41 and left eye 42..47; 36 and 45 are the outer corners, 8 apart
    gt[0, 36:42] = [[0, 0], [1, -1], [2, -1], [3, 0], [2, 1], [1, 1]]
    gt[0, 42:48] = [[5, 0], [6, -1], [7, -1], [8, 0], [7, 1], [6, 1]]
    iod = metrics.normalizing_distance(gt, IBUG68, "interocular")
    np.testing.assert_allclose(iod, [8.0])
    # no pupil points in iBUG 68: pupils are the eye-contour means, (1.5, 0) and (6.5, 0)
    ipd = metrics.normalizing_distance(gt, IBUG68, "interpupil")
    np.testing.assert_allclose(ipd, [5.0])
    with pytest.raises(ValueError, match="unknown norm"):
        metrics.normalizing_distance(gt, IBUG68, "bbox")


def test_nme_uses_the_given_normaliser() -> None:
    gt = np.zeros((1, 68, 2))
    gt[0, 45] = [4.0, 0.0]
    pred = gt + [0.0, 0.2]  # every point 0.2 off
    nme = metrics.nme_per_sample(pred, gt, metrics.normalizing_distance(gt, IBUG68))
    np.testing.assert_allclose(nme, [0.05])


def test_pose_mae_wraps_angles_and_skips_unknown() -> None:
    pred = np.array([[10.0, 0.0, 179.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    gt = np.array([[0.0, 5.0, -179.0], [np.nan, np.nan, np.nan], [-2.0, 3.0, 4.0]])
    out = metrics.pose_mae(pred, gt)
    assert out is not None
    assert out["yaw"] == pytest.approx((10 + 2) / 2)
    assert out["pitch"] == pytest.approx((5 + 3) / 2)
    assert out["roll"] == pytest.approx((2 + 4) / 2)  # 179 vs -179 is 2 degrees
    assert out["mean"] == pytest.approx((6 + 4 + 3) / 3)
    assert out["count"] == 2
    assert metrics.pose_mae(pred[1:2], gt[1:2]) is None


def test_empty_and_json_cleaning() -> None:
    assert math.isnan(metrics.failure_rate(np.array([])))
    assert math.isnan(metrics.auc(np.array([])))
    clean = metrics.finite_or_none({"a": float("nan"), "b": [1.0, float("inf")], "c": 2})
    assert clean == {"a": None, "b": [1.0, None], "c": 2}


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="must both be"):
        metrics.nme_per_sample(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)), np.ones(2))
