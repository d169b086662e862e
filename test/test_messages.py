"""Message <-> array conversions, checked against the rosbags typestore's message classes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facealign_ros import messages as M  # noqa: N812
from facealign_ros.bag import get_typestore, msg_class

Image = msg_class("sensor_msgs/msg/Image")


def make_image(arr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False):
    h, w = arr.shape[:2]
    row = arr.reshape(h, -1).view(np.uint8)
    step = row.shape[1] + pad
    data = np.zeros((h, step), np.uint8)
    data[:, : row.shape[1]] = row
    return Image(
        header=M.header(msg_class, 5, "cam"),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=step,
        data=data.reshape(-1),
    )


def test_image_encodings_known_answers() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    assert np.array_equal(M.image_from_msg(make_image(rgb, "rgb8", pad=3)), rgb)
    assert np.array_equal(M.image_from_msg(make_image(rgb[:, :, ::-1].copy(), "bgr8")), rgb)
    assert np.array_equal(M.image_from_msg(make_image(rgb[:, :, ::-1].copy(), "8UC3")), rgb)
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(M.image_from_msg(make_image(rgba, "rgba8")), rgb)
    mono = rgb[:, :, 0].copy()
    out = M.image_from_msg(make_image(mono, "mono8"))
    assert out.shape == (4, 5, 3) and np.array_equal(out[:, :, 1], mono)
    m16 = (mono.astype("<u2") << 8) | 0x7F
    assert np.array_equal(M.image_from_msg(make_image(m16, "mono16"))[:, :, 2], mono)
    big = make_image(m16.astype(">u2"), "16UC1", pad=2, bigendian=True)
    assert np.array_equal(M.image_from_msg(big)[:, :, 0], mono)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_mosaic_of_a_flat_colour_gives_that_colour(pattern: str) -> None:
    rgb = (200, 120, 40)
    mosaic = np.zeros((8, 10), np.uint8)
    for k, letter in enumerate(pattern):  # the 2x2 tile, row by row from the top-left pixel
        mosaic[k // 2 :: 2, k % 2 :: 2] = rgb["rgb".index(letter)]
    out = M.image_from_msg(make_image(mosaic, f"bayer_{pattern}8", pad=1))
    assert out.shape == (8, 10, 3) and out.dtype == np.uint8
    assert np.all(out[2:-2, 2:-2] == np.array(rgb, np.uint8))  # away from the border


def test_yuv422_byte_orders() -> None:
    """UYVY (``yuv422``) and YUYV (``yuv422_yuy2``) of the same pixels decode alike."""
    y = np.concatenate([np.arange(40, 240, 20), np.arange(40, 140, 10)]).astype(np.uint8)
    y = y.reshape(2, 10)  # luma rises pixel by pixel
    u = np.full((2, 5), 128, np.uint8)
    v = np.array([[128] * 5, [200] * 5], np.uint8)  # row 1: red chroma
    uyvy = np.stack([u, y[:, 0::2], v, y[:, 1::2]], axis=2).reshape(2, 10, 2)
    yuyv = np.stack([y[:, 0::2], u, y[:, 1::2], v], axis=2).reshape(2, 10, 2)
    a = M.image_from_msg(make_image(uyvy, "yuv422", pad=4))
    b = M.image_from_msg(make_image(yuyv, "yuv422_yuy2"))
    assert a.shape == (2, 10, 3) and np.array_equal(a, b)
    grey = a[0].astype(int)
    assert np.all(grey[:, 0] == grey[:, 1]) and np.all(grey[:, 1] == grey[:, 2])  # no chroma
    assert np.all(np.diff(grey[:, 0]) > 0)  # pixel order kept
    red = a[1].astype(int)
    assert np.all(red[:, 0] > red[:, 1] + 50) and np.all(red[:, 0] > red[:, 2] + 50)
    with pytest.raises(M.MessageError, match="odd width"):
        M.image_from_msg(make_image(np.zeros((2, 3, 2), np.uint8), "yuv422"))


def test_image_errors_are_clear() -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(M.MessageError, match="unsupported image encoding '32FC1'"):
        M.image_from_msg(make_image(rgb[:, :, 0].copy(), "32FC1"))
    bad = make_image(rgb, "rgb8")
    bad.data = bad.data[:-1]
    with pytest.raises(M.MessageError, match="bytes"):
        M.image_from_msg(bad)
    short = make_image(rgb, "rgb8")
    short.step = 4
    with pytest.raises(M.MessageError, match="step"):
        M.image_from_msg(short)


def test_image_round_trip_through_cdr() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    msg = M.image_to_msg(msg_class, rgb, 123, "cam", encoding="bgr8")
    store = get_typestore()
    back = store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
    assert M.stamp_ns(back) == 123 and np.array_equal(M.image_from_msg(back), rgb)


def test_landmarks_round_trip_and_normalisation() -> None:
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 300, (70, 2))
    conf = rng.uniform(0, 1, 70)
    msg = M.landmarks_to_msg(msg_class, pts, conf, 346, 260, 10**9 + 7, "cam")
    store = get_typestore()
    back = store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
    xy, c = M.landmarks_from_msg(back)
    inside = (pts[:, 0] < 345.5) & (pts[:, 1] < 259.5)
    assert np.allclose(xy[inside], pts[inside], atol=1e-3)  # float32 fields
    assert np.allclose(c, conf, atol=1e-6)
    corner = M.landmarks_to_msg(msg_class, np.full((70, 2), -0.5), np.ones(70), 10, 10, 0)
    assert corner.landmarks[0].x == 0.0  # the image's outer edge is 0 (pixel-centre - 0.5)
    nan = pts.copy()
    nan[3] = np.nan
    m = M.landmarks_to_msg(msg_class, nan, conf, 346, 260, 0)
    assert m.landmarks[3].c == 0.0
    with pytest.raises(M.MessageError, match="70"):
        M.landmarks_to_msg(msg_class, pts[:68], conf[:68], 346, 260, 0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=4, max_size=4))
def test_quaternion_matrix_round_trip(q: list[float]) -> None:
    qv = np.array(q)
    if np.linalg.norm(qv) < 1e-3:
        return
    R = M.quat_to_matrix(qv)
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.isclose(np.linalg.det(R), 1.0)
    assert np.allclose(M.quat_to_matrix(M.matrix_to_quat(R)), R, atol=1e-9)
