"""``sensor_msgs/CompressedImage`` (JPEG or PNG, as ``image_transport``'s ``compressed``) -> RGB.

Robots often record only the compressed stream of their cameras. The image size is read from
the JPEG/PNG header before anything is decoded, so a crafted header cannot make the decoder
allocate gigabytes: images over :data:`MAX_PIXELS` are refused.
"""

from __future__ import annotations

import struct
from typing import Any

import cv2
import numpy as np

from facealign_ros.messages import byte_field

MAX_PIXELS = 4096 * 4096
"""Largest compressed image decoded, pixels."""
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
"""JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic)."""


def is_compressed_image(msg: Any) -> bool:
    """True for a ``sensor_msgs/CompressedImage`` (a ``format`` field, no ``encoding``)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def header_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG or JPEG header, or None when neither is recognised.

    JPEG: the marker segments are walked by their lengths up to the first start-of-frame, so
    large EXIF or ICC segments before it cost nothing.

    Args:
        data: the compressed bytes.
    """
    buf = byte_field(data)

    def take(i: int, n: int) -> bytes:
        return buf[i : i + n].tobytes()

    if take(0, 8) == _PNG_MAGIC and take(12, 4) == b"IHDR" and buf.size >= 24:
        w, h = struct.unpack(">II", take(16, 8))
        return int(w), int(h)
    if take(0, 2) != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= buf.size:
        if buf[i] != 0xFF:
            return None
        marker = int(buf[i + 1])
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", take(i + 2, 2))
        if marker in _JPEG_SOF and i + 9 <= buf.size:
            h, w = struct.unpack(">HH", take(i + 5, 4))
            return int(w), int(h)
        if length < 2:
            return None
        i += 2 + length
    return None


def _jpeg_complete(data: np.ndarray) -> bool:
    """Whether a JPEG's bytes end with its end-of-image marker (FF D9).

    Trailing padding (0x00 / 0xFF bytes some encoders and drivers append) is allowed. FF D9
    cannot occur inside entropy-coded data (an FF there is followed by 00 or a restart marker).
    """
    end = data.size
    while end > 0 and data[end - 1] in (0x00, 0xFF):
        end -= 1
        if data.size - end > 4096:  # more padding than any encoder writes
            return False
    return end >= 2 and data[end - 2] == 0xFF and data[end - 1] == 0xD9


def decode_compressed(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` -> ``(H, W, 3)`` uint8 RGB.

    ``format`` is informational (``"jpeg"``, ``"png"``, ``"bgr8; jpeg compressed bgr8"``, ...):
    the bytes say what they are. Grey images come back with three equal channels.

    Raises:
        ValueError: not a JPEG or PNG, an image over :data:`MAX_PIXELS` or without pixels,
            or data that does not decode.
    """
    data = byte_field(msg.data)
    fmt = str(msg.format)
    size = header_size(data)
    if size is None:
        head = data[:8].tobytes()
        if head.startswith(b"\xff\xd8") or head == _PNG_MAGIC:
            raise ValueError(f"compressed image (format {fmt!r}): its header is cut off")
        raise ValueError(f"compressed image (format {fmt!r}) is neither JPEG nor PNG")
    w, h = size
    if w <= 0 or h <= 0 or w * h > MAX_PIXELS:
        raise ValueError(f"compressed image of {w}x{h} px: 1 to {MAX_PIXELS} pixels are decoded")
    if data[:2].tobytes() == b"\xff\xd8" and not _jpeg_complete(data):
        # say why: OpenCV's decoder refuses such data without a reason (some libjpeg builds
        # instead decode it with the missing rows grey and only warn)
        raise ValueError(f"compressed image (format {fmt!r}, {w}x{h}): the JPEG is cut off")
    # the sensor's pixel grid, as the raw image would hold it: an EXIF orientation is ignored
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.shape[:2] != (h, w):
        raise ValueError(f"compressed image (format {fmt!r}, {w}x{h}) does not decode")
    return np.ascontiguousarray(bgr[:, :, ::-1])
