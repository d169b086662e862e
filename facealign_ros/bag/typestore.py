"""The rosbags typestore of facealign_ros: ROS 2 Humble types plus our .msg definitions.

The message definitions that ROS 2 does not ship with Humble (``event_camera_msgs`` and the
REP-155 ``hri_msgs``) are kept once, as ``.msg`` text, under
``facealign_ros/msg_defs/<package>/msg/<Name>.msg``. :func:`get_typestore` registers them on
top of rosbags' ``ROS2_HUMBLE`` store, so ``sensor_msgs/msg/Image``, ``CameraInfo``,
``geometry_msgs/msg/PoseStamped`` and ``tf2_msgs/msg/TFMessage`` come from the base store.

Messages built here are rosbags dataclasses with the same field names as rclpy messages, so
the ROS-free core consumes either.

Example:
    >>> header = make_header(1_500_000_000, "camera_optical")
    >>> header.stamp.sec, header.stamp.nanosec
    (1, 500000000)
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg
from rosbags.typesys import get_typestore as _rosbags_typestore

from facealign_ros.messages import header, time_msg

if TYPE_CHECKING:
    from rosbags.interfaces.typing import Typesdict
    from rosbags.typesys.store import Typestore
    from rosbags.typesys.stores.ros2_humble import builtin_interfaces__msg__Time as Time
    from rosbags.typesys.stores.ros2_humble import std_msgs__msg__Header as Header

__all__ = [
    "EVENT_PACKET",
    "FACIAL_LANDMARKS",
    "IDS_LIST",
    "NORMALIZED_POINT",
    "NORMALIZED_ROI",
    "NUM_FACIAL_LANDMARKS",
    "get_typestore",
    "make_event_packet",
    "make_header",
    "make_time",
    "msg_class",
    "msg_definitions",
    "normalize_typename",
    "time_to_ns",
]

EVENT_PACKET = "event_camera_msgs/msg/EventPacket"
IDS_LIST = "hri_msgs/msg/IdsList"
NORMALIZED_POINT = "hri_msgs/msg/NormalizedPointOfInterest2D"
NORMALIZED_ROI = "hri_msgs/msg/NormalizedRegionOfInterest2D"
FACIAL_LANDMARKS = "hri_msgs/msg/FacialLandmarks"
NUM_FACIAL_LANDMARKS = 70
"""Fixed length of ``FacialLandmarks.landmarks`` (68 dlib/OpenPose points + two pupils)."""

_NS_PER_S = 1_000_000_000
_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1


def msg_definitions() -> dict[str, str]:
    """Return the .msg texts kept in the package, keyed by full type name.

    Returns:
        ``{"<pkg>/msg/<Name>": text}`` for every ``msg_defs/<pkg>/msg/<Name>.msg``, sorted by
        type name.
    """
    root = resources.files("facealign_ros").joinpath("msg_defs")
    found: dict[str, str] = {}
    for pkg in root.iterdir():
        msg_dir = pkg.joinpath("msg")
        if not pkg.is_dir() or not msg_dir.is_dir():
            continue
        for entry in msg_dir.iterdir():
            if entry.is_file() and entry.name.endswith(".msg"):
                found[f"{pkg.name}/msg/{entry.name[: -len('.msg')]}"] = entry.read_text("utf-8")
    return dict(sorted(found.items()))


def _parse_definitions() -> Typesdict:
    """Parse every packaged .msg file into one rosbags typesdict."""
    typs: Typesdict = {}
    for typename, text in msg_definitions().items():
        typs.update(get_types_from_msg(text, typename))
    return typs


@functools.cache
def get_typestore() -> Typestore:
    """Return the shared typestore: ROS 2 Humble plus the packaged .msg definitions.

    The store is built once per process and cached; treat it as read-only.

    Returns:
        A rosbags ``Typestore`` that knows ``event_camera_msgs`` and ``hri_msgs`` types.
    """
    store = _rosbags_typestore(Stores.ROS2_HUMBLE)
    store.register(_parse_definitions())
    return store


def normalize_typename(typename: str) -> str:
    """Return the full ``pkg/msg/Name`` form of a message type name.

    Args:
        typename: ``"pkg/msg/Name"`` or the short ROS 1 style ``"pkg/Name"``.

    Returns:
        The full type name.

    Raises:
        ValueError: If the name has neither form.
    """
    parts = typename.split("/")
    if len(parts) == 2 and all(parts):
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3 and all(parts) and parts[1] == "msg":
        return typename
    msg = f"invalid message type name {typename!r}; expected 'pkg/msg/Name' or 'pkg/Name'"
    raise ValueError(msg)


def msg_class(typename: str) -> type[Any]:
    """Return the message class (a rosbags dataclass) for a type name.

    Args:
        typename: ``"pkg/msg/Name"`` or ``"pkg/Name"``, e.g. ``"sensor_msgs/msg/Image"``.

    Returns:
        The dataclass; instantiate it with keyword arguments for every field.

    Raises:
        KeyError: If the typestore does not know the type.
        ValueError: If the name is malformed.
    """
    full = normalize_typename(typename)
    try:
        return get_typestore().types[full]
    except KeyError:
        msg = f"unknown message type {full!r}: not in ROS 2 Humble nor in facealign_ros/msg_defs"
        raise KeyError(msg) from None


def make_time(stamp_ns: int) -> Time:
    """Build a ``builtin_interfaces/msg/Time`` from integer nanoseconds.

    Raises:
        ValueError: If the seconds do not fit an int32.
    """
    return time_msg(msg_class, stamp_ns)


def time_to_ns(stamp: Any) -> int:
    """Return a ``builtin_interfaces/msg/Time`` (rosbags or rclpy) as integer nanoseconds.

    Args:
        stamp: Any object with ``sec`` and ``nanosec`` attributes.

    Returns:
        ``sec * 1e9 + nanosec``.
    """
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def make_header(stamp_ns: int, frame_id: str = "") -> Header:
    """Build a ``std_msgs/msg/Header`` (stamp in nanoseconds)."""
    return header(msg_class, stamp_ns, frame_id)


def _check_range(name: str, value: int, hi: int) -> int:
    """Return ``value`` as int after checking ``0 <= value <= hi``."""
    value = int(value)
    if not 0 <= value <= hi:
        msg = f"{name}={value} is out of range [0, {hi}]"
        raise ValueError(msg)
    return value


def make_event_packet(
    events: bytes | bytearray | memoryview | np.ndarray,
    width: int,
    height: int,
    encoding: str,
    seq: int,
    time_base: int,
    stamp_ns: int,
    frame_id: str = "",
    *,
    is_bigendian: bool = False,
) -> Any:
    """Build an ``event_camera_msgs/msg/EventPacket``.

    Args:
        events: Encoded payload as bytes or a numpy array (any dtype; its raw bytes are used).
        width: Sensor width in pixels.
        height: Sensor height in pixels.
        encoding: Payload encoding, e.g. ``"evt3"``, ``"mono"``, ``"libcaer"``.
        seq: Packet sequence number.
        time_base: Encoding-specific time base in nanoseconds (unused by ``evt3``).
        stamp_ns: Header stamp in nanoseconds.
        frame_id: Camera optical frame.
        is_bigendian: Whether the payload was written big-endian.

    Returns:
        The EventPacket message; ``events`` is a contiguous 1-D ``np.uint8`` array (a view of
        ``events`` where possible, not a copy).

    Raises:
        ValueError: If a size or counter is out of its field's range.
    """
    if isinstance(events, np.ndarray):
        payload = np.ascontiguousarray(events).reshape(-1).view(np.uint8)
    else:
        payload = np.frombuffer(events, dtype=np.uint8)
    return msg_class(EVENT_PACKET)(
        header=make_header(stamp_ns, frame_id),
        height=_check_range("height", height, _UINT32_MAX),
        width=_check_range("width", width, _UINT32_MAX),
        seq=_check_range("seq", seq, _UINT64_MAX),
        time_base=_check_range("time_base", time_base, _UINT64_MAX),
        encoding=str(encoding),
        is_bigendian=bool(is_bigendian),
        events=payload,
    )
