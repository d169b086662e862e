"""Write a generated scene as a rosbag2 (mcap or sqlite3) with ground-truth topics.

Topics (all in one optical frame: RGB and event pixels are registered):

========================== =================================== ================================
topic                      type                                rate
========================== =================================== ================================
``/event_camera/events``   event_camera_msgs/msg/EventPacket   ~1 kHz (1 ms of sensor time each)
``/camera/image_raw``      sensor_msgs/msg/Image (rgb8)        fps
``/camera/camera_info``    sensor_msgs/msg/CameraInfo          fps (plumb_bob, D = 0)
``/facealign/gt/landmarks``  hri_msgs/msg/FacialLandmarks      fps (at the image stamps)
``/facealign/gt/head_pose``  geometry_msgs/msg/PoseStamped     fps
``/facealign/gt/landmarks_hf`` hri_msgs/msg/FacialLandmarks    1 kHz (every ms of scene time)
``/facealign/synth/metadata`` std_msgs/msg/String (JSON)       once, at the end
========================== =================================== ================================

Event packets follow ros-event-camera/metavision_driver for ``evt3``: the payload is raw EVT
3.0 with the sensor's own 24-bit microsecond clock (sensor time 0 = scene time 0),
``time_base = 0`` ("not used" for evt3), ``seq`` counting published packets from 0, and
``header.stamp`` the host (ROS) time at which the packet's first data arrived, modelled as
``start_ns + t_first_event + latency_ns``. Packets cover 1 ms windows of sensor time; windows
without events are not published (the driver only publishes data it receives).

Images are stamped at the middle of their exposure; their ground truth carries the same stamp.
Landmarks are normalised as ``x = (u + 0.5) / width``, ``y = (v + 0.5) / height`` for pixel
centres ``(u, v)`` at integers (so (0, 0) is the top-left image corner), ``c`` is 1 for a
visible and 0 for an occluded or out-of-image point (whose x, y are clipped to [0, 1]).
The head pose is the head frame (origin behind the eyes, x to the subject's left, y down,
z into the head) in the camera optical frame. All log times equal the header stamps, and
nothing depends on the wall clock: the same seed and parameters give byte-identical bags.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from facealign_ros import topics
from facealign_ros.bag import (
    EVENT_PACKET,
    FACIAL_LANDMARKS,
    BagWriter,
    make_event_packet,
    make_header,
    msg_class,
)
from facealign_ros.events import EVENT_DTYPE, encode
from facealign_ros.messages import image_to_msg, landmarks_to_msg, pose_to_msg
from training.synth.engine import ENGINE_VERSION, FrameOutput, SensorConfig, generate
from training.synth.render import PinholeCamera
from training.synth.scene import IntervalScene, SceneConfig

TOPIC_EVENTS = topics.EVENTS
TOPIC_IMAGE = topics.IMAGE
TOPIC_INFO = topics.CAMERA_INFO
TOPIC_GT = topics.GT_LANDMARKS
TOPIC_POSE = topics.GT_HEAD_POSE
TOPIC_GT_HF = topics.GT_LANDMARKS_HF
TOPIC_META = topics.SYNTH_METADATA
TOPICS: dict[str, str] = {
    TOPIC_EVENTS: EVENT_PACKET,
    TOPIC_IMAGE: "sensor_msgs/msg/Image",
    TOPIC_INFO: "sensor_msgs/msg/CameraInfo",
    TOPIC_GT: FACIAL_LANDMARKS,
    TOPIC_POSE: "geometry_msgs/msg/PoseStamped",
    TOPIC_GT_HF: FACIAL_LANDMARKS,
    TOPIC_META: "std_msgs/msg/String",
}
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000
"""ROS time of scene time 0 (a fixed date, never the wall clock)."""
FRAME_ID = "camera_optical_frame"
PACKET_NS = 1_000_000


def landmarks_msg(stamp_ns: int, uv: np.ndarray, visible: np.ndarray, width: int, height: int):
    """``hri_msgs/FacialLandmarks`` from (70, 2) pixels; ``c`` = visible and inside the image."""
    xy = (np.asarray(uv, np.float64) + 0.5) / [width, height]
    inside = np.all((xy >= 0) & (xy <= 1), axis=1)
    c = (np.asarray(visible, bool) & inside).astype(np.float64)
    return landmarks_to_msg(msg_class, uv, c, width, height, stamp_ns, FRAME_ID)


def image_msgs(stamp_ns: int, image: np.ndarray, k_matrix: np.ndarray) -> tuple:
    """``(Image rgb8, CameraInfo plumb_bob)`` for an (H, W, 3) uint8 frame."""
    h, w = image.shape[:2]
    header = make_header(stamp_ns, FRAME_ID)
    img = image_to_msg(msg_class, image, stamp_ns, FRAME_ID)
    p = np.zeros((3, 4))
    p[:, :3] = k_matrix
    roi = msg_class("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0,
                                                        width=0, do_rectify=False)  # fmt: skip
    info = msg_class("sensor_msgs/msg/CameraInfo")(
        header=header, height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.asarray(k_matrix, np.float64).reshape(-1), r=np.eye(3).reshape(-1),
        p=p.reshape(-1), binning_x=0, binning_y=0, roi=roi,
    )  # fmt: skip
    return img, info


class EventPacketizer:
    """Cut a sorted event stream into ~1 ms EVT 3.0 packets the way the Prophesee driver does.

    Args:
        width: sensor width, px.
        height: sensor height, px.
        start_ns: ROS time of sensor time 0, ns.
        latency_ns: modelled delay from an event to the host receiving it, ns.
        packet_ns: packet window of sensor time, ns.
    """

    def __init__(self, width: int, height: int, start_ns: int, latency_ns: int = 0,
                 packet_ns: int = PACKET_NS) -> None:  # fmt: skip
        self.width, self.height, self.start_ns = width, height, int(start_ns)
        self.latency_ns, self.packet_ns = int(latency_ns), int(packet_ns)
        self.seq = 0
        self._carry = np.empty(0, EVENT_DTYPE)

    def push(self, events: np.ndarray, until_ns: int | None) -> list:
        """Add sorted events; return packets of every window that ends at or before ``until_ns``.

        Args:
            events: sorted EVENT_DTYPE events later than all pushed before.
            until_ns: sensor time up to which the stream is complete; None flushes everything.

        Returns:
            A list of ``(stamp_ns, EventPacket)``.
        """
        ev = (
            np.concatenate([self._carry, events]).astype(EVENT_DTYPE)
            if self._carry.size
            else events
        )
        if until_ns is None:
            cut = ev.size
        else:
            cut = int(np.searchsorted(ev["t"], (until_ns // self.packet_ns) * self.packet_ns))
        ready, self._carry = ev[:cut], ev[cut:].copy()
        out = []
        if ready.size:
            win = ready["t"] // self.packet_ns
            bounds = np.flatnonzero(np.diff(win)) + 1
            for chunk in np.split(ready, bounds):
                stamp = self.start_ns + int(chunk["t"][0]) + self.latency_ns
                payload = encode(chunk, "evt3", self.width, self.height)
                msg = make_event_packet(payload, self.width, self.height, "evt3", self.seq, 0,
                                        stamp, FRAME_ID)  # fmt: skip
                self.seq += 1
                out.append((stamp, msg))
        return out


def write_frame(writer: BagWriter, out: FrameOutput, packetizer: EventPacketizer,
                k_matrix: np.ndarray, start_ns: int, flush: bool = False,
                ground_truth: bool = True) -> int:  # fmt: skip
    """Write all messages of one generated frame; returns the number of event packets.

    ``ground_truth`` False (a scene without a face) writes no landmark or head-pose message.
    """
    iv = out.interval
    h, w = out.image.shape[:2]
    until = None if flush else int(iv.times_ns[-1])
    packets = packetizer.push(out.events, until)
    for stamp, msg in packets:
        writer.write(TOPIC_EVENTS, stamp, msg)
    stamp = start_ns + iv.stamp_ns
    img, info = image_msgs(stamp, out.image, k_matrix)
    writer.write(TOPIC_IMAGE, stamp, img)
    writer.write(TOPIC_INFO, stamp, info)
    if not ground_truth:
        return len(packets)
    writer.write(TOPIC_GT, stamp, landmarks_msg(stamp, iv.uv, iv.visible, w, h))
    if iv.rotation is not None and iv.translation is not None:
        writer.write(TOPIC_POSE, stamp, pose_to_msg(msg_class, iv.rotation, iv.translation,
                                                    stamp, FRAME_ID))  # fmt: skip
    for t, uv, vis in zip(iv.hf_times_ns, iv.hf_uv, iv.hf_visible, strict=True):
        writer.write(TOPIC_GT_HF, start_ns + int(t), landmarks_msg(start_ns + int(t), uv, vis,
                                                                  w, h))  # fmt: skip
    return len(packets)


def write_synth_bag(
    out: str | Path,
    config: SceneConfig,
    sensor: SensorConfig | None = None,
    workers: int = 0,
    storage: str = "mcap",
    start_ns: int = DEFAULT_START_NS,
    latency_ns: int = 0,
    progress: Callable[[int, int], None] | None = None,
    scene: IntervalScene | None = None,
    source: dict | None = None,
) -> dict:
    """Generate ``config`` and write it as a rosbag2 at ``out`` (atomically).

    Args:
        out: output bag directory; must not exist.
        config: the scene.
        sensor: camera-side parameters (None: defaults).
        workers: rendering worker processes (0: render in this process).
        storage: ``"mcap"`` or ``"sqlite3"``.
        start_ns: ROS time of scene time 0, ns.
        latency_ns: modelled event transport latency in packet stamps, ns.
        progress: called with ``(frames done, frames total)`` after each frame.
        scene: a prebuilt scene source (e.g. an animated photo); None renders ``config``'s
            synthetic head. A source without a 3D pose writes no head-pose topic.
        source: JSON-able description of ``scene`` stored in the metadata record as ``source``.

    Returns:
        Statistics: frames, events, dropped events, packets, sub-frames, wall seconds.

    Raises:
        facealign_ros.bag.BagError: the output exists or cannot be written (nothing is left).
        ValueError: bad storage name.
    """
    t_wall = time.perf_counter()
    sensor = sensor or SensorConfig()
    writer = BagWriter(out, storage=storage)  # checks the path before any work
    k_matrix = PinholeCamera.for_sensor(config.width, config.height, config.hfov_deg).K
    stats = {"frames": 0, "events": 0, "dropped_events": 0, "packets": 0, "subframes": 0}
    with writer:
        for topic, typename in TOPICS.items():
            if config.face or topic not in (TOPIC_GT, TOPIC_POSE, TOPIC_GT_HF):
                writer.add_topic(topic, typename)
        packetizer = EventPacketizer(config.width, config.height, start_ns, latency_ns)
        n = config.n_frames
        last_stamp = start_ns
        for fo in generate(config, sensor, workers, scene):
            stats["packets"] += write_frame(writer, fo, packetizer, k_matrix, start_ns,
                                            fo.interval.k == n, config.face)  # fmt: skip
            stats["frames"] += 1
            stats["events"] += int(fo.events.size)
            stats["dropped_events"] += fo.dropped
            stats["subframes"] += int(fo.interval.stats["subframes"])
            last_stamp = start_ns + int(fo.interval.times_ns[-1])
            if progress is not None:
                progress(stats["frames"], n)
        meta = metadata(config, sensor, start_ns, latency_ns, stats, source)
        writer.write(TOPIC_META, last_stamp, msg_class("std_msgs/msg/String")(data=meta))
    stats["wall_s"] = time.perf_counter() - t_wall
    return stats


def metadata(config: SceneConfig, sensor: SensorConfig, start_ns: int, latency_ns: int,
             stats: dict, source: dict | None = None) -> str:  # fmt: skip
    """The JSON metadata record (sorted keys; no wall-clock values).

    ``source`` describes a scene source other than the synthetic head (e.g. the photo of an
    animated-photo bag).
    """
    record = {
        "engine": "facealign_ros.training.synth",
        "engine_version": ENGINE_VERSION,
        "seed": config.seed,
        "scene": config.as_dict(),
        "sensor": {
            "events": asdict(sensor.events),
            "rgb": asdict(sensor.rgb_for(config)),
            "max_event_rate_hz": sensor.max_event_rate_hz,
        },
        "start_ns": start_ns,
        "event_time": "ROS time = start_ns + sensor time; packet stamp = first event + latency",
        "event_latency_ns": latency_ns,
        "image_stamp": "middle of the exposure",
        "landmark_normalisation": "x = (u + 0.5) / width, y = (v + 0.5) / height",
        "landmarks": "REP-155 70: iBUG 68 + 68 right pupil + 69 left pupil; c = visibility",
        "head_pose_frame": "head origin 0.09 m behind the eyes; x left(subject), y down, z back",
        "stats": {k: v for k, v in stats.items() if k != "wall_s"},
    }
    if source is not None:
        record["source"] = source
    return json.dumps(record, sort_keys=True)
