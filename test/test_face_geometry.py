"""Landmark schemes and crop geometry: known answers and properties."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facealign_ros.events import make_events
from facealign_ros.face import crop as C  # noqa: N812
from facealign_ros.face.landmarks import (
    IBUG68,
    REP155_70,
    SCHEMES,
    WFLW98,
    flip_landmarks,
    flip_normalized,
    get_scheme,
    inter_ocular,
    to_rep155,
)


@pytest.mark.parametrize("scheme", list(SCHEMES.values()), ids=list(SCHEMES))
def test_flip_is_an_involution_permutation(scheme) -> None:
    perm = scheme.flip
    assert sorted(perm.tolist()) == list(range(scheme.n_points))
    assert np.array_equal(perm[perm], np.arange(scheme.n_points))


@pytest.mark.parametrize("scheme", list(SCHEMES.values()), ids=list(SCHEMES))
def test_flip_twice_is_identity_and_swaps_eyes(scheme) -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 100, (scheme.n_points, 2))
    twice = flip_landmarks(flip_landmarks(pts, 100, scheme), 100, scheme)
    assert np.allclose(twice, pts)
    once = flip_landmarks(pts, 100, scheme)
    r, l_ = scheme.outer_eyes
    assert np.allclose(once[r], [99 - pts[l_, 0], pts[l_, 1]])
    assert np.allclose(flip_normalized(flip_normalized(pts / 100, scheme), scheme), pts / 100)


def test_flip_matches_mirrored_image() -> None:
    """A landmark on a marked pixel stays on it after flipping the image and the points."""
    img = np.zeros((10, 20), dtype=np.uint8)
    pts = np.zeros((68, 2))
    pts[36] = [3, 4]  # right eye outer corner
    pts[45] = [15, 4]  # left eye outer corner
    img[4, 3] = 1
    img[4, 15] = 2
    f_img = np.fliplr(img)
    f_pts = flip_landmarks(pts, 20, IBUG68)
    x, y = f_pts[36].astype(int)
    assert f_img[y, x] == 2  # the new right corner is where the old left corner went
    x, y = f_pts[45].astype(int)
    assert f_img[y, x] == 1


def test_scheme_lookup_and_errors() -> None:
    assert get_scheme(70) is REP155_70 and get_scheme("wflw98") is WFLW98
    with pytest.raises(ValueError, match="unknown landmark scheme"):
        get_scheme("dlib5")
    with pytest.raises(ValueError, match="no landmark scheme"):
        get_scheme(5)


def test_to_rep155_and_inter_ocular_known_answers() -> None:
    pts = np.zeros((68, 2))
    pts[36:42] = [[0, 0], [1, -1], [2, -1], [3, 0], [2, 1], [1, 1]]
    pts[42:48] = pts[36:42] + [10, 0]
    rep = to_rep155(pts, IBUG68)
    assert rep.shape == (70, 2)
    assert np.allclose(rep[68], [1.5, 0]) and np.allclose(rep[69], [11.5, 0])
    assert inter_ocular(pts, IBUG68) == pytest.approx(np.hypot(pts[45, 0] - pts[36, 0], 0))
    w = np.arange(98 * 2, dtype=float).reshape(98, 2)
    r = to_rep155(w, WFLW98)
    assert np.array_equal(r[36], w[60]) and np.array_equal(r[45], w[72])
    assert np.array_equal(r[68], w[96]) and np.array_equal(r[69], w[97])
    assert np.array_equal(r[8], w[16])  # chin


def test_box_near_is_relative_to_its_side() -> None:
    box = C.Box(100.0, 50.0, 40.0)
    assert box.near(C.Box(103.9, 46.1, 43.9), 0.1)  # every difference < 4 px = 0.1 x 40
    assert not box.near(C.Box(104.1, 50.0, 40.0), 0.1)
    assert not box.near(C.Box(100.0, 50.0, 35.9), 0.1)
    assert box.near(box, 0.0) and not box.near(C.Box(100.0, 50.0, 40.01), 0.0)


def test_box_from_landmarks_known_answer_and_visibility() -> None:
    pts = np.array([[10, 20], [30, 20], [20, 60], [20, 40], [1000, 1000]], float)
    vis = np.array([1, 1, 1, 1, 0])
    box = C.box_from_landmarks(pts, vis, scale=1.5)
    assert (box.cx, box.cy, box.side) == (20, 40, 60)
    with pytest.raises(ValueError, match="no finite"):
        C.box_from_landmarks(np.full((5, 2), np.nan))


def test_crop_affine_maps_box_edges_to_crop_edges() -> None:
    box = C.Box(50.0, 40.0, 20.0)
    A = C.crop_affine(box, 10)
    xmin, ymin, xmax, ymax = box.as_roi()
    # pixel-centre convention: continuous box edges -> -0.5 and out_size - 0.5
    edges = C.transform_points(np.array([[xmin, ymin], [xmax, ymax]]), A)
    assert np.allclose(edges, [[-0.5, -0.5], [9.5, 9.5]])
    assert np.allclose(C.to_normalized(edges, 10), [[0, 0], [1, 1]])
    # a 90 degree rotation keeps the centre and turns +x (right) into -y (up)
    R = C.crop_affine(box, 10, angle_deg=90)
    c = C.transform_points(np.array([[50.0, 40.0], [60.0, 40.0]]), R)
    assert np.allclose(c[0], [4.5, 4.5]) and np.allclose(c[1], [4.5, -0.5])


@settings(max_examples=50, deadline=None)
@given(
    st.floats(-50, 400),
    st.floats(-50, 300),
    st.floats(4, 400),
    st.integers(8, 160),
    st.floats(-180, 180),
)
def test_crop_round_trip_points(cx: float, cy: float, side: float, size: int, ang: float) -> None:
    A = C.crop_affine(C.Box(cx, cy, side), size, ang)
    pts = np.random.default_rng(1).uniform(-100, 500, (7, 2))
    back = C.transform_points(C.transform_points(pts, A), C.invert_affine(A))
    assert np.allclose(back, pts, atol=1e-6)
    u = C.to_normalized(C.transform_points(pts, A), size)
    assert np.allclose(C.from_normalized(u, size), C.transform_points(pts, A))


def test_warp_image_puts_landmark_pixel_at_the_mapped_position() -> None:
    img = np.zeros((60, 80, 3), np.float32)
    img[30, 50] = [1, 2, 3]
    box = C.Box(45.0, 28.0, 16.0)
    A = C.crop_affine(box, 32)  # 2x up-scaling
    out = C.warp_image(img, A, 32)
    p = C.transform_points(np.array([50.0, 30.0]), A)
    iy, ix = np.unravel_index(np.argmax(out[..., 2]), out.shape[:2])
    assert np.allclose([ix, iy], p, atol=1.0)
    many = np.repeat(img[..., :1], 7, axis=2)  # more than 4 channels
    assert C.warp_image(many, A, 32).shape == (32, 32, 7)
    chw = C.warp_chw(np.moveaxis(many, -1, 0), A, 32)
    assert chw.shape == (7, 32, 32) and np.allclose(chw[3], out[..., 0])


def test_roi_and_events_in_roi() -> None:
    A = C.crop_affine(C.Box(10.0, 10.0, 8.0), 16)
    roi = C.covering_roi(A, 16, 346, 260)
    x0, y0, x1, y1 = roi
    assert x0 <= 6 and y0 <= 6 and x1 >= 14 and y1 >= 14 and x1 - x0 < 14
    ev = make_events([0, 1, 2], [5, 7, 300], [6, 9, 9], [1, 0, 1])
    sub = C.events_in_roi(ev, roi)
    assert sub.size == 2 and sub["x"][1] == 7 - x0 and sub["y"][1] == 9 - y0
    # the shifted affine maps ROI-relative points like A maps absolute ones
    As = C.shift_affine(A, x0, y0)
    assert np.allclose(C.transform_points([7 - x0, 9 - y0], As), C.transform_points([7, 9], A))
    outside = C.covering_roi(C.crop_affine(C.Box(-100.0, -100.0, 8.0), 16), 16, 346, 260)
    assert outside[0] == outside[2] or outside[1] == outside[3]


@settings(max_examples=50, deadline=None)
@given(
    st.integers(0, 2000),
    st.tuples(
        st.integers(-300, 400), st.integers(-300, 300), st.integers(-10, 400), st.integers(-10, 300)
    ),
    st.integers(0, 2**31),
)
def test_events_in_roi_equals_the_mask_definition(n: int, roi: tuple, seed: int) -> None:
    """Origins may lie outside the sensor (negative): coordinates are shifted, t and p kept."""
    from facealign_ros.events import EVENT_DTYPE
    from facealign_ros.face.crop import events_in_roi

    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(-(10**12), 2**62, n))
    ev["x"], ev["y"], ev["p"] = (
        rng.integers(0, 400, n),
        rng.integers(0, 300, n),
        rng.integers(0, 256, n),
    )
    x0, y0, x1, y1 = roi
    keep = (ev["x"] >= x0) & (ev["x"] < x1) & (ev["y"] >= y0) & (ev["y"] < y1)
    expect = ev[keep]
    expect["x"] = (expect["x"].astype(np.int64) - x0).astype(np.uint16)
    expect["y"] = (expect["y"].astype(np.int64) - y0).astype(np.uint16)
    got = events_in_roi(ev, roi)
    assert got.dtype == EVENT_DTYPE and np.array_equal(got, expect)


def _bilinear(img: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Float64 bilinear samples of ``img`` at pixel-centre coordinates inside the image."""
    x0 = np.clip(np.floor(sx).astype(int), 0, img.shape[1] - 2)
    y0 = np.clip(np.floor(sy).astype(int), 0, img.shape[0] - 2)
    fx, fy = sx - x0, sy - y0
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


@pytest.mark.parametrize("channels", [1, 2, 3, 5, 6, 7])
def test_warps_match_a_float64_bilinear_reference(channels: int) -> None:
    """Every channel count (OpenCV's 2-channel float warp alone is inexact) and both layouts."""
    rng = np.random.default_rng(channels)
    src = (rng.random((40, 50, channels)) * 10).astype(np.float32)
    A = np.array([[0.9, 0.2, 3.3], [-0.15, 1.1, 2.1]])
    Ai = cv2.invertAffineTransform(A)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    sx = Ai[0, 0] * xx + Ai[0, 1] * yy + Ai[0, 2]
    sy = Ai[1, 0] * xx + Ai[1, 1] * yy + Ai[1, 2]
    inside = (sx >= 0) & (sy >= 0) & (sx <= 49) & (sy <= 39)
    hwc = C.warp_image(src, A, 32).reshape(32, 32, channels)
    chw = C.warp_chw(np.moveaxis(src, -1, 0), A, 32)
    for c in range(channels):
        ref = _bilinear(src[:, :, c].astype(np.float64), sx, sy)
        assert np.abs(hwc[:, :, c] - ref)[inside].max() < 2e-3
        assert np.abs(chw[c] - ref)[inside].max() < 2e-3
