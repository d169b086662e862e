"""``sensor_msgs/CompressedImage`` (JPEG / PNG) decoding, and its size guard."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facealign_ros import messages as M  # noqa: N812
from facealign_ros.bag import msg_class
from facealign_ros.compressed_image import MAX_PIXELS, header_size

Compressed = msg_class("sensor_msgs/msg/CompressedImage")


def compressed(data: bytes, fmt: str = "jpeg"):
    return Compressed(header=M.header(msg_class, 7, "cam"), format=fmt,
                      data=np.frombuffer(data, np.uint8))  # fmt: skip


def encoded(img_rgb: np.ndarray, ext: str) -> bytes:
    bgr = img_rgb[..., ::-1] if img_rgb.ndim == 3 else img_rgb
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr))
    assert ok
    return buf.tobytes()


def test_png_is_exact_and_jpeg_is_close() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    assert np.array_equal(M.image_from_msg(compressed(encoded(rgb, ".png"), "png")), rgb)
    smooth = cv2.GaussianBlur(rgb, (0, 0), 3)
    out = M.image_from_msg(compressed(encoded(smooth, ".jpg"), "bgr8; jpeg compressed bgr8"))
    assert out.shape == rgb.shape and np.abs(out.astype(int) - smooth).mean() < 4
    grey = smooth[:, :, 0].copy()
    out = M.image_from_msg(compressed(encoded(grey, ".png"), "mono8; png compressed mono8"))
    assert out.shape == (24, 40, 3) and np.array_equal(out[:, :, 2], grey)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from([".jpg", ".png"]))
def test_header_size_reads_what_opencv_wrote(w: int, h: int, ext: str) -> None:
    img = np.zeros((h, w, 3), np.uint8)
    assert header_size(encoded(img, ext)) == (w, h)


def test_header_size_walks_past_large_segments() -> None:
    jpg = encoded(np.zeros((10, 30, 3), np.uint8), ".jpg")
    app = b"\xff\xe1" + struct.pack(">H", 65000) + bytes(64998)  # an APP1 (EXIF) of ~64 KB
    assert header_size(jpg[:2] + app + app + jpg[2:]) == (30, 10)


def test_bad_and_oversized_images_are_clear_errors() -> None:
    with pytest.raises(M.MessageError, match="neither JPEG nor PNG"):
        M.image_from_msg(compressed(b"GIF89a....", "gif"))
    png = bytearray(encoded(np.zeros((4, 4, 3), np.uint8), ".png"))
    huge = bytearray(png)
    huge[16:24] = struct.pack(">II", 60000, 60000)  # a header claiming 3.6 Gpx
    with pytest.raises(M.MessageError, match=str(MAX_PIXELS)):
        M.image_from_msg(compressed(bytes(huge), "png"))
    jpg = encoded(np.full((16, 16, 3), 99, np.uint8), ".jpg")
    with pytest.raises(M.MessageError, match="header is cut off"):
        M.image_from_msg(compressed(jpg[:40], "jpeg"))  # before its frame header
    with pytest.raises(M.MessageError, match="does not decode"):
        M.image_from_msg(compressed(bytes(png[:-20]), "png"))  # the pixel data cut
    for cut in (0, 1, 5, 9, 20):
        with pytest.raises(M.MessageError):
            M.image_from_msg(compressed(png[:cut], "png"))


def test_a_jpeg_cut_mid_scan_is_refused_not_decoded_grey() -> None:
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), (0, 0), 2)
    jpg = encoded(img, ".jpg")
    for cut in (len(jpg) // 2, len(jpg) - 40, len(jpg) - 2):  # inside the scan / without EOI
        with pytest.raises(M.MessageError, match="cut off"):
            M.image_from_msg(compressed(jpg[:cut], "jpeg"))
    # padding after the end-of-image marker is fine
    for tail in (b"", b"\x00" * 7, b"\xff\xff"):
        out = M.image_from_msg(compressed(jpg + tail, "jpeg"))
        assert out.shape == (64, 96, 3)


def test_exif_orientation_is_ignored() -> None:
    """The sensor's pixel grid comes back, as a raw image would hold it (no rotation)."""
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = 255  # left half white
    jpg = encoded(rgb, ".jpg")
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + bytes(4)
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd  # orientation 6: rotate 90
    app1 = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    out = M.image_from_msg(compressed(jpg[:2] + app1 + jpg[2:]))
    assert out.shape == (40, 60, 3) and out[:, :20].mean() > 200 and out[:, 40:].mean() < 50


def test_rclpy_list_and_array_data() -> None:
    """Messages from rclpy may hold ``uint8[]`` as ``array.array('B')`` (or a list): both decode."""
    import array

    rgb = np.random.default_rng(1).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    png = encoded(rgb, ".png")
    for data in (array.array("B", png), list(png)):
        msg = Compressed(header=M.header(msg_class, 7, "cam"), format="png", data=data)
        assert np.array_equal(M.image_from_msg(msg), rgb)
    raw = M.image_to_msg(msg_class, rgb, 5)
    for data in (array.array("B", raw.data.tobytes()), raw.data.tolist()):
        raw.data = data
        assert np.array_equal(M.image_from_msg(raw), rgb)
