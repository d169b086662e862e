"""rosbag2 I/O without ROS: the package typestore and atomic bag reading/writing (rosbags).

Message definitions that ROS 2 Humble lacks (``event_camera_msgs``, REP-155 ``hri_msgs``) are
kept once as .msg text under ``facealign_ros/msg_defs`` and registered by
:func:`get_typestore`. :func:`recover_bag` saves the messages of an mcap recording whose
recorder was killed before it finished the file.
"""

from .io import BagError, BagReader, TopicSummary, within
from .recover import RecoverReport, recover_bag
from .typestore import (
    EVENT_PACKET,
    FACIAL_LANDMARKS,
    IDS_LIST,
    NORMALIZED_POINT,
    NORMALIZED_ROI,
    NUM_FACIAL_LANDMARKS,
    get_typestore,
    make_event_packet,
    make_header,
    make_time,
    msg_class,
    msg_definitions,
    normalize_typename,
    time_to_ns,
)
from .writer import BagWriter, Storage

__all__ = [
    "EVENT_PACKET",
    "FACIAL_LANDMARKS",
    "IDS_LIST",
    "NORMALIZED_POINT",
    "NORMALIZED_ROI",
    "NUM_FACIAL_LANDMARKS",
    "BagError",
    "BagReader",
    "BagWriter",
    "RecoverReport",
    "Storage",
    "TopicSummary",
    "get_typestore",
    "make_event_packet",
    "make_header",
    "make_time",
    "msg_class",
    "msg_definitions",
    "normalize_typename",
    "recover_bag",
    "time_to_ns",
    "within",
]
