"""Topic names shared by the node, replay, the synthetic engine and the training data.

Inputs are the defaults (remappable in the node, flags in ``facealign replay``); ground-truth
topics are what ``facealign synth`` and ``facealign label`` write and evaluation reads.
"""

from __future__ import annotations

from collections.abc import Container

EVENTS = "/event_camera/events"
IMAGE = "/camera/image_raw"
CAMERA_INFO = "/camera/camera_info"

GT_LANDMARKS = "/facealign/gt/landmarks"
GT_HEAD_POSE = "/facealign/gt/head_pose"
GT_LANDMARKS_HF = "/facealign/gt/landmarks_hf"
SYNTH_METADATA = "/facealign/synth/metadata"

LABEL_QUALITY = "/facealign/label/quality"
LABEL_METADATA = "/facealign/label/metadata"

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
"""JPEG/PNG frames (``image_transport``'s ``compressed``, topic ``<image>/compressed``): read
where a bag has no raw image topic."""


def image_topic_in(topic: str, available: Container[str]) -> str:
    """``topic``, or its ``/compressed`` sibling where ``available`` holds only that.

    Robots often record only ``image_transport``'s compressed stream (JPEG/PNG frames).
    """
    compressed = f"{topic}/compressed"
    return compressed if topic not in available and compressed in available else topic


def image_topics(available: dict) -> list[str]:
    """A bag's RGB topics, sorted: its ``sensor_msgs/Image`` ones, else its compressed ones.

    Args:
        available: topic -> an object with a ``msgtype`` (``BagReader.topics``).
    """
    for msgtype in (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE):
        found = sorted(t for t, s in available.items() if s.msgtype == msgtype)
        if found:
            return found
    return []
