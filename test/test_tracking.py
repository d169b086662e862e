"""Tracking state, search candidates, plausibility and One-Euro smoothing."""

from __future__ import annotations

import numpy as np

from facealign_ros.face.crop import Box, box_from_landmarks
from facealign_ros.tracking import (
    FaceTracker,
    OneEuroFilter,
    activity_map,
    candidate_boxes,
    plausibility,
)


def face_points(cx: float = 100.0, cy: float = 80.0, s: float = 60.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.c_[cx + rng.uniform(-s / 2, s / 2, 70), cy + rng.uniform(-s / 2, s / 2, 70)]


def test_one_euro_constant_signal_and_lag_shrinks_with_beta():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    x = np.array([[1.0, 2.0]])
    for k in range(5):
        assert np.allclose(f(x, k * 10_000_000), x)
    ramps = []
    for beta in (0.0, 5.0):
        f = OneEuroFilter(min_cutoff=0.5, beta=beta)
        for k in range(50):
            y = f(np.array([k * 1.0]), k * 10_000_000)
        ramps.append(49.0 - float(y[0]))
    assert ramps[1] < ramps[0]  # faster adaptation with a larger beta
    f.reset()
    assert np.allclose(f(np.array([7.0]), 0), 7.0)


def test_tracker_ids_and_loss():
    tr = FaceTracker(box_scale=1.25, lost_after=2)
    pts = face_points()
    t1 = tr.start(pts, np.ones(70), 0)
    assert t1.face_id == "f0001" and tr.tracking
    box = tr.box()
    ref = box_from_landmarks(pts, None, 1.25)
    assert np.isclose(box.side, ref.side) and np.isclose(box.cx, ref.cx)
    assert tr.update(pts + 1, np.ones(70), 1, hit=False)  # one miss: still tracked
    assert tr.update(pts, np.ones(70), 2, hit=True)  # a hit resets the count
    assert tr.update(pts, np.zeros(70), 3, hit=False)
    assert not tr.update(pts, np.zeros(70), 4, hit=False)  # second consecutive miss: lost
    assert not tr.tracking and tr.box() is None
    assert tr.start(pts, np.ones(70), 5).face_id == "f0002"  # never re-used


def test_candidates_rank_the_active_region_and_keep_the_centre():
    ev_xy = np.random.default_rng(0).normal([250, 60], 10, (3000, 2)).clip(0, [345, 259])
    ev = np.zeros(3000, dtype=[("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
    ev["x"], ev["y"] = ev_xy[:, 0], ev_xy[:, 1]
    act = activity_map(ev, None, 346, 260)
    boxes = candidate_boxes(346, 260, act, 32, 4)
    assert len(boxes) == 4
    assert np.isclose(boxes[0].cx, 172.5) and np.isclose(boxes[0].cy, 129.5)
    best = boxes[1]
    assert abs(best.cx - 250) < best.side / 2 and abs(best.cy - 60) < best.side / 2
    flat = activity_map(None, np.full((260, 346, 3), 100, np.uint8), 346, 260)
    assert flat.sum() == 0 and len(candidate_boxes(346, 260, flat, 32, 3)) == 3


def test_plausibility():
    pts = face_points()
    box = box_from_landmarks(pts, None, 1.25)
    assert np.isclose(plausibility(pts, box, 1.25), 1.0)
    assert plausibility(pts, Box(box.cx, box.cy, box.side * 3), 1.25) < 0.01
    assert plausibility(pts, Box(box.cx + box.side, box.cy, box.side), 1.25) < 0.01
    assert plausibility(np.full((70, 2), np.nan), box, 1.25) == 0.0


def test_tracker_box_covers_all_points_whatever_their_confidence():
    """A few confident points (eyes, nose) must not shrink the next crop to themselves.

    Confidence estimates error, not visibility; such a box lost the face to the detector check.
    """
    tr = FaceTracker(box_scale=1.25, lost_after=2)
    pts = face_points()
    conf = np.full(70, 0.2)
    conf[36:48] = 0.9  # only the eyes are confident
    tr.start(pts, conf, 0)
    ref = box_from_landmarks(pts, None, 1.25)
    box = tr.box()
    assert np.allclose([box.cx, box.cy, box.side], [ref.cx, ref.cy, ref.side])
