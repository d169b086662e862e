"""A recording with ground truth, decoded once into arrays (and cached on disk).

:func:`load_bag_arrays` reads a rosbag2 written by the synthetic engine (or a user recording
labelled by ``facealign label``): it decodes the event packets exactly as the runtime does
(:class:`~facealign_ros.events.Decoder` + :class:`~facealign_ros.events.clock.SensorClock`),
converts event times to ROS time, and collects images and ground truth. Ground-truth rows whose
confidences are all 0 (frames ``facealign label`` marked as unreliable) are skipped. The result
is cached as ``.npy`` files keyed by the bag's path, size and modification time, and
memory-mapped on later loads, so datasets of many bags start fast and share pages between
data-loader workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facealign_ros import topics
from facealign_ros.bag import BagError, BagReader
from facealign_ros.events import Decoder, concat_events
from facealign_ros.events.clock import SensorClock
from facealign_ros.messages import image_from_msg, landmarks_from_msg, pose_from_msg, stamp_ns
from facealign_ros.pip_fetch import cache_dir

LOG = logging.getLogger(__name__)
_TOPICS = (
    topics.EVENTS,
    topics.IMAGE,
    topics.CAMERA_INFO,
    topics.GT_LANDMARKS,
    topics.GT_HEAD_POSE,
    topics.GT_LANDMARKS_HF,
    topics.SYNTH_METADATA,
)
LIGHTS = ("normal", "low", "dark")
MOTIONS = ("slow", "fast")
CACHE_VERSION = "3"


@dataclass
class BagArrays:
    """One recording as arrays; times are ROS time in ns.

    Attributes:
        events: :data:`EVENT_DTYPE` ``(E,)`` with ``t`` converted to ROS time, time-ordered.
        width: event sensor width, px.
        height: event sensor height, px.
        frames: ``(F, H, W, 3)`` uint8 RGB frames (registered to the event sensor).
        frame_stamps: ``(F,)`` int64 image stamps.
        gt_stamps: ``(G,)`` int64 stamps of ground-truth landmarks at frames.
        gt_points: ``(G, 70, 2)`` float32 landmarks, sensor pixels.
        gt_visible: ``(G, 70)`` float32 visibility.
        pose_stamps: ``(P,)`` int64; ``pose_rot`` ``(P, 3, 3)``; ``pose_t`` ``(P, 3)`` metres.
        hf_stamps: ``(M,)`` int64 stamps of the high-rate ground truth; ``hf_points``
            ``(M, 70, 2)``; ``hf_visible`` ``(M, 70)``.
        K: ``(3, 3)`` camera matrix (from CameraInfo), or None.
        light: index into :data:`LIGHTS` (-1 unknown). motion: index into :data:`MOTIONS`.
        name: the bag's directory name.
    """

    events: np.ndarray
    width: int
    height: int
    frames: np.ndarray
    frame_stamps: np.ndarray
    gt_stamps: np.ndarray
    gt_points: np.ndarray
    gt_visible: np.ndarray
    pose_stamps: np.ndarray
    pose_rot: np.ndarray
    pose_t: np.ndarray
    hf_stamps: np.ndarray
    hf_points: np.ndarray
    hf_visible: np.ndarray
    K: np.ndarray | None
    light: int
    motion: int
    name: str

    def events_between(self, t0: int, t1: int) -> np.ndarray:
        """Events with ``t0 <= t < t1`` (ROS ns), a view."""
        t = self.events["t"]
        return self.events[np.searchsorted(t, t0) : np.searchsorted(t, t1)]


_ARRAYS = ("events", "frames", "frame_stamps", "gt_stamps", "gt_points", "gt_visible")
_ARRAYS += ("pose_stamps", "pose_rot", "pose_t", "hf_stamps", "hf_points", "hf_visible")


def _cache_root() -> Path:
    return cache_dir() / "bag_arrays"


def _cache_key(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha1(CACHE_VERSION.encode())
    h.update(str(path.resolve()).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def load_bag_arrays(path: str | Path, cache: bool = True, require_gt: bool = True) -> BagArrays:
    """Decode a ground-truth bag into :class:`BagArrays` (cached under ``$FACEALIGN_CACHE``).

    Args:
        path: the bag (folder or file).
        cache: read / write the decoded arrays in the cache.
        require_gt: False also reads a recording without a ground-truth topic (an empty seat,
            used for negative crops); its ground-truth arrays are empty.

    Raises:
        facealign_ros.bag.BagError: if the bag cannot be read or lacks the event topic.
        ValueError: if it has no ground-truth landmarks (and ``require_gt``).
    """
    path = Path(path)
    cdir = _cache_root() / _cache_key(path)
    if cache and (cdir / "meta.json").is_file():
        meta = json.loads((cdir / "meta.json").read_text())
        if require_gt and not meta.get("gt_topic", True):
            raise ValueError(_no_gt(path))
        arrs = {k: np.load(cdir / f"{k}.npy", mmap_mode="r") for k in _ARRAYS}
        K = np.asarray(meta["K"]) if meta["K"] is not None else None
        return BagArrays(**arrs, width=meta["width"], height=meta["height"], K=K,
                         light=meta["light"], motion=meta["motion"], name=meta["name"])  # fmt: skip
    try:
        arrays, gt_topic = _decode(path, require_gt)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        # e.g. a ground-truth topic of another message type, an unknown event encoding
        if isinstance(exc, BagError) or (isinstance(exc, ValueError) and str(path) in str(exc)):
            raise  # names the bag already
        raise ValueError(f"bag {str(path)!r}: cannot read it for training ({exc})") from exc
    if cache:
        tmp = cdir.with_name(cdir.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        for k in _ARRAYS:
            np.save(tmp / f"{k}.npy", getattr(arrays, k))
        meta = {
            "width": arrays.width,
            "height": arrays.height,
            "light": arrays.light,
            "motion": arrays.motion,
            "name": arrays.name,
            "K": None if arrays.K is None else arrays.K.tolist(),
            "source": str(path),
            "gt_topic": gt_topic,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        with contextlib.suppress(OSError):  # another process may have cached it first
            tmp.rename(cdir)
        shutil.rmtree(tmp, ignore_errors=True)
    return arrays


_INPUTS = (topics.EVENTS, topics.IMAGE, topics.CAMERA_INFO)
_INPUT_TYPES = (
    "event_camera_msgs/msg/EventPacket",
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CameraInfo",
)


def input_topics(bag: BagReader, path: Path) -> tuple[str, str, str]:
    """``(events, image, camera_info)`` topics of a bag ("" = none for image / camera info).

    For the image and camera info, the topics ``facealign label`` used (its metadata record)
    come first, as the labels belong to those; then the default names
    (:mod:`facealign_ros.topics`); then the one topic of the type. Images: ``sensor_msgs/Image``
    topics, or where a bag has none its ``CompressedImage`` ones (``IMAGE/compressed`` first).

    Raises:
        ValueError: no event topic, or several candidates and nothing to choose between them.
    """
    available = bag.topics
    labelled: dict[str, str] = {}
    if topics.LABEL_METADATA in available:
        for _, _, msg in bag.messages(topics.LABEL_METADATA):
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                opts = json.loads(msg.data)["options"]
                labelled = {
                    topics.IMAGE: str(opts.get("image_topic", "")),
                    topics.CAMERA_INFO: str(opts.get("camera_info_topic", "")),
                }
    out = []
    for key, msgtype in zip(_INPUTS, _INPUT_TYPES, strict=True):
        default = key
        if key == topics.IMAGE:  # raw frames, else JPEG/PNG ones (``<image>/compressed``)
            cands = topics.image_topics(available)
            default = topics.image_topic_in(key, cands)
        else:
            cands = sorted(t for t, s in available.items() if s.msgtype == msgtype)
        if labelled.get(key) in cands:
            out.append(labelled[key])
        elif default in cands:
            out.append(default)
        elif len(cands) == 1:
            out.append(cands[0])
        elif not cands and key != topics.EVENTS:
            out.append("")
        else:
            what = f"several {msgtype} topics {cands}" if cands else f"no {msgtype} topic"
            raise ValueError(f"bag {str(path)!r}: {what} and none is named {default}")
    return out[0], out[1], out[2]


def _no_gt(path: Path) -> str:
    return f"bag {str(path)!r} has no ground truth on {topics.GT_LANDMARKS}"


def _decode(path: Path, require_gt: bool) -> tuple[BagArrays, bool]:
    """The bag's arrays and whether it has a ground-truth landmark topic."""
    events, frames, frame_stamps = [], [], []
    gt, pose, hf = ([], [], []), ([], [], []), ([], [], [])
    K, light, motion, dec, clock, size = None, -1, -1, None, SensorClock(), (0, 0)
    bad_gt = 0  # ground-truth messages with NaN/inf values, skipped
    with BagReader(path) as bag:
        available = bag.topics
        gt_topic = topics.GT_LANDMARKS in available
        if require_gt and not gt_topic:
            raise ValueError(_no_gt(path))
        ev_topic, im_topic, info_topic = input_topics(bag, path)
        rename = {ev_topic: topics.EVENTS, im_topic: topics.IMAGE, info_topic: topics.CAMERA_INFO}
        rename.pop("", None)
        wanted = [t for t in _TOPICS if t in available and t not in _INPUTS] + list(rename)
        for topic, _, msg in bag.messages(wanted):
            topic = rename.get(topic, topic)
            if topic == topics.EVENTS:
                if dec is None:
                    size = (int(msg.width), int(msg.height))
                    dec = Decoder(msg.encoding, *size)
                ev = dec.decode_packet(msg)
                if ev.size:
                    clock.observe(stamp_ns(msg), int(ev["t"][0]))
                    ev = ev.copy()
                    ev["t"] = clock.to_ros(ev["t"])
                    events.append(ev)
            elif topic == topics.IMAGE:
                frames.append(image_from_msg(msg))
                frame_stamps.append(stamp_ns(msg))
            elif topic == topics.CAMERA_INFO and K is None:
                K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
            elif topic in (topics.GT_LANDMARKS, topics.GT_LANDMARKS_HF):
                xy, c = landmarks_from_msg(msg)
                if not np.any(c > 0):  # marked by `facealign label` (or no point visible)
                    continue
                if not np.isfinite(xy).all():  # not a label: counted, logged below
                    bad_gt += 1
                    continue
                dst = gt if topic == topics.GT_LANDMARKS else hf
                dst[0].append(stamp_ns(msg))
                dst[1].append(xy)
                dst[2].append(c)
            elif topic == topics.GT_HEAD_POSE:
                R, t = pose_from_msg(msg)
                if not (np.isfinite(R).all() and np.isfinite(t).all()):
                    bad_gt += 1
                    continue
                pose[0].append(stamp_ns(msg))
                pose[1].append(R)
                pose[2].append(t)
            elif topic == topics.SYNTH_METADATA:
                meta = json.loads(msg.data)
                scene = meta.get("scene", {})
                light = LIGHTS.index(scene["light"]) if scene.get("light") in LIGHTS else -1
                motion = MOTIONS.index(scene["motion"]) if scene.get("motion") in MOTIONS else -1
    if bad_gt:
        LOG.warning(
            "bag %r: %d ground-truth messages with NaN/inf values skipped", str(path), bad_gt
        )
    ev = concat_events(events)
    if ev.size and np.any(np.diff(ev["t"]) < 0):
        ev = ev[np.argsort(ev["t"], kind="stable")]
    h, w = size[1], size[0]
    shapes = {fr.shape[:2] for fr in frames}
    if shapes and (shapes != {(h, w)} and dec is not None):
        raise ValueError(
            f"bag {str(path)!r}: images {sorted(shapes)} (h, w) differ from the event sensor "
            f"({h}, {w}); training needs RGB registered to the event sensor"
        )
    if len(shapes) > 1:
        raise ValueError(f"bag {str(path)!r}: images of several sizes {sorted(shapes)}")
    f = np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8)

    def arr(x: list, shape: tuple, dtype: type) -> np.ndarray:
        return np.asarray(x, dtype=dtype) if x else np.zeros((0, *shape), dtype)

    return BagArrays(
        events=ev, width=w, height=h, frames=f,
        frame_stamps=arr(frame_stamps, (), np.int64),
        gt_stamps=arr(gt[0], (), np.int64), gt_points=arr(gt[1], (70, 2), np.float32),
        gt_visible=arr(gt[2], (70,), np.float32),
        pose_stamps=arr(pose[0], (), np.int64), pose_rot=arr(pose[1], (3, 3), np.float64),
        pose_t=arr(pose[2], (3,), np.float64),
        hf_stamps=arr(hf[0], (), np.int64), hf_points=arr(hf[1], (70, 2), np.float32),
        hf_visible=arr(hf[2], (70,), np.float32),
        K=K, light=light, motion=motion, name=path.name,
    ), gt_topic  # fmt: skip
