"""Conversions between ROS messages and arrays (rclpy and rosbags messages alike).

Only field access is used, so messages from rclpy and from the rosbags typestore work the same.
Building messages goes through a *message-class factory*: a callable ``factory(typename)`` that
returns the class for ``"pkg/msg/Name"`` (:func:`facealign_ros.bag.msg_class` for bags; the node
passes one that imports rclpy message modules).

Coordinates: pixel-centre convention in arrays (pixel ``j`` has its centre at ``x = j``); REP-155
normalised coordinates put the image's outer edges at 0 and 1, so ``u = (x + 0.5) / width``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

MsgFactory = Callable[[str], type]
"""``factory("pkg/msg/Name") -> message class``."""

N_REP155 = 70


class MessageError(ValueError):
    """A message cannot be converted (unsupported encoding, inconsistent sizes, ...)."""


_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 1, "8UC1": 1}
_CHANNELS.update({"8UC3": 3, "16UC1": 1, "yuv422": 2, "yuv422_yuy2": 2})
_BAYER = {  # ROS names the 2x2 tile from its top-left pixel; OpenCV from the second row's
    "bayer_rggb8": "COLOR_BayerBG2RGB",
    "bayer_bggr8": "COLOR_BayerRG2RGB",
    "bayer_gbrg8": "COLOR_BayerGR2RGB",
    "bayer_grbg8": "COLOR_BayerGB2RGB",
}
_CHANNELS.update(dict.fromkeys(_BAYER, 1))
_YUV = {"yuv422": "COLOR_YUV2RGB_UYVY", "yuv422_yuy2": "COLOR_YUV2RGB_YUYV"}
IMAGE_ENCODINGS = tuple(_CHANNELS)
"""Image encodings :func:`image_from_msg` accepts (``yuv422`` is UYVY, ``yuv422_yuy2`` YUYV,
as in ``sensor_msgs/image_encodings.hpp``; ``bayer_*8`` are demosaiced bilinearly)."""


def byte_field(data: Any) -> np.ndarray:
    """A message's ``uint8[]`` field as a 1-D uint8 array, without a copy where possible.

    Takes what rosbags (numpy array) and rclpy (``array.array("B")``, bytes, or a list) hold;
    any other numpy array is viewed as its bytes.
    """
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(memoryview(data), dtype=np.uint8)  # bytes, bytearray, array.array


def image_from_msg(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` -> ``(H, W, 3)`` uint8 RGB array (a copy).

    Supports :data:`IMAGE_ENCODINGS`; 16-bit mono (either byte order) is scaled to 8 bits
    (>> 8); ``8UC3`` is taken as BGR (OpenCV's default), ``8UC1`` as mono; YUV 4:2:2 and Bayer
    mosaics are converted to RGB.

    A ``sensor_msgs/CompressedImage`` (JPEG or PNG) is decoded too
    (:mod:`facealign_ros.compressed_image`).

    Raises:
        MessageError: for an unsupported encoding, a data buffer that does not match
            height x step, a YUV 4:2:2 image of odd width, or compressed data that does not
            decode.
    """
    from facealign_ros import compressed_image

    if compressed_image.is_compressed_image(msg):
        try:
            return compressed_image.decode_compressed(msg)
        except ValueError as exc:
            raise MessageError(str(exc)) from exc
    enc = str(msg.encoding)
    if enc not in _CHANNELS:
        raise MessageError(
            f"unsupported image encoding {enc!r}; supported: {', '.join(IMAGE_ENCODINGS)}"
        )
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    ch = _CHANNELS[enc]
    bpp = 2 if enc in ("mono16", "16UC1") else 1
    if h <= 0 or w <= 0:
        raise MessageError(f"image has no pixels ({w}x{h})")
    if enc in _YUV and w % 2:
        raise MessageError(f"{enc} image of odd width {w}: pixels come in pairs")
    if step < w * ch * bpp:
        raise MessageError(f"image step {step} is smaller than width x pixel size {w * ch * bpp}")
    data = byte_field(msg.data)
    if data.size < h * step:
        raise MessageError(f"image data has {data.size} bytes, expected {h} x {step}")
    rows = data[: h * step].reshape(h, step)[:, : w * ch * bpp]
    if bpp == 2:
        order = ">u2" if bool(msg.is_bigendian) else "<u2"
        img = (rows.copy().view(order) >> 8).astype(np.uint8).reshape(h, w)
    else:
        img = rows.reshape(h, w, ch)
    if enc in _YUV or enc in _BAYER:
        import cv2

        code = getattr(cv2, _YUV.get(enc) or _BAYER[enc])
        return cv2.cvtColor(np.ascontiguousarray(img if enc in _YUV else img[:, :, 0]), code)
    if ch == 1:
        return np.repeat(img.reshape(h, w, 1), 3, axis=2)
    if enc in ("bgr8", "bgra8", "8UC3"):
        return np.ascontiguousarray(img[:, :, 2::-1])
    return np.ascontiguousarray(img[:, :, :3])


def image_to_msg(
    factory: MsgFactory, rgb: np.ndarray, stamp_ns: int, frame_id: str = "", encoding: str = "rgb8"
) -> Any:
    """``(H, W, 3)`` uint8 RGB -> ``sensor_msgs/Image`` (``rgb8`` or ``bgr8``)."""
    img = np.ascontiguousarray(rgb if encoding == "rgb8" else rgb[:, :, ::-1])
    if encoding not in ("rgb8", "bgr8") or img.ndim != 3 or img.shape[2] != 3:
        raise MessageError(f"image_to_msg: need (H, W, 3) uint8 and rgb8/bgr8, got {img.shape}")
    h, w = img.shape[:2]
    return factory("sensor_msgs/msg/Image")(
        header=header(factory, stamp_ns, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * 3,
        data=img.reshape(-1).astype(np.uint8),
    )


def time_msg(factory: MsgFactory, stamp_ns: int) -> Any:
    """``builtin_interfaces/Time`` from integer nanoseconds.

    Raises:
        MessageError: if the seconds do not fit the message's int32.
    """
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    if not -(2**31) <= sec < 2**31:
        raise MessageError(f"stamp {stamp_ns} ns is outside the int32 seconds of a ROS Time")
    return factory("builtin_interfaces/msg/Time")(sec=sec, nanosec=nsec)


def header(factory: MsgFactory, stamp_ns: int, frame_id: str = "") -> Any:
    """``std_msgs/Header`` with a stamp from integer nanoseconds."""
    return factory("std_msgs/msg/Header")(stamp=time_msg(factory, stamp_ns), frame_id=frame_id)


def stamp_ns(msg: Any) -> int:
    """Header stamp of a stamped message, integer nanoseconds."""
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


def landmarks_from_msg(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """``hri_msgs/FacialLandmarks`` -> ``(70, 2)`` pixel coordinates and ``(70,)`` ``c`` values.

    Pixel coordinates use the message's own ``width``/``height``.

    Raises:
        MessageError: if the message does not hold 70 points or has no image size.
    """
    pts = msg.landmarks
    if len(pts) != N_REP155:
        raise MessageError(f"FacialLandmarks holds {len(pts)} points, expected {N_REP155}")
    w, h = int(msg.width), int(msg.height)
    if w <= 0 or h <= 0:
        raise MessageError(f"FacialLandmarks has no image size ({w}x{h})")
    arr = np.array([(p.x, p.y, p.c) for p in pts], dtype=np.float64)
    xy = arr[:, :2] * [w, h] - 0.5
    return xy, arr[:, 2].copy()


def landmarks_to_msg(
    factory: MsgFactory,
    points_px: np.ndarray,
    confidence: np.ndarray,
    width: int,
    height: int,
    stamp: int,
    frame_id: str = "",
) -> Any:
    """``(70, 2)`` pixel landmarks + ``(70,)`` confidences -> ``hri_msgs/FacialLandmarks``.

    Coordinates are normalised by the image size (``u = (x + 0.5) / width``) and clipped to
    ``[0, 1]``; confidences are clipped to ``[0, 1]``; NaN points become (0, 0) with c = 0.
    """
    p = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    c = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if p.shape[0] != N_REP155 or c.shape[0] != N_REP155:
        raise MessageError(f"landmarks_to_msg: need {N_REP155} points and confidences")
    u = np.clip((p + 0.5) / [width, height], 0.0, 1.0)
    c = np.clip(np.nan_to_num(c, nan=0.0), 0.0, 1.0)
    bad = ~np.all(np.isfinite(p), axis=1)
    u[bad], c[bad] = 0.0, 0.0
    point = factory("hri_msgs/msg/NormalizedPointOfInterest2D")
    return factory("hri_msgs/msg/FacialLandmarks")(
        header=header(factory, stamp, frame_id),
        landmarks=[
            point(x=float(a), y=float(b), c=float(k)) for (a, b), k in zip(u, c, strict=True)
        ],
        height=int(height),
        width=int(width),
    )


def pose_to_msg(
    factory: MsgFactory, rotation: np.ndarray, translation: np.ndarray, stamp: int, frame_id: str
) -> Any:
    """Rotation ``(3, 3)`` + translation ``(3,)`` (m) -> ``geometry_msgs/PoseStamped``."""
    qx, qy, qz, qw = (float(v) for v in matrix_to_quat(rotation))
    tx, ty, tz = (float(v) for v in np.asarray(translation, dtype=np.float64).reshape(3))
    pose = factory("geometry_msgs/msg/Pose")(
        position=factory("geometry_msgs/msg/Point")(x=tx, y=ty, z=tz),
        orientation=factory("geometry_msgs/msg/Quaternion")(x=qx, y=qy, z=qz, w=qw),
    )
    return factory("geometry_msgs/msg/PoseStamped")(
        header=header(factory, stamp, frame_id), pose=pose
    )


def pose_from_msg(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """``geometry_msgs/PoseStamped`` -> rotation matrix ``(3, 3)`` and translation ``(3,)`` (m)."""
    q = msg.pose.orientation
    t = msg.pose.position
    return quat_to_matrix(np.array([q.x, q.y, q.z, q.w])), np.array([t.x, t.y, t.z], float)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(x, y, z, w)`` -> rotation matrix ``(3, 3)`` (all NaN for NaN/inf)."""
    q = np.asarray(q, dtype=np.float64)
    if not np.isfinite(q).all():  # callers check the matrix; no invalid-value warnings
        return np.full((3, 3), np.nan)
    x, y, z, w = q / max(np.linalg.norm(q), 1e-12)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrix ``(3, 3)`` -> unit quaternion ``(x, y, z, w)`` with w >= 0."""
    m = np.asarray(R, dtype=np.float64)
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = s / 4
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q
