"""Label a user's recording with the RGB teacher: bag in, the same bag plus ground truth out.

Every message of the input is copied unchanged (raw bytes, log time, type, definition, QoS).
For each labelled image (every ``every``-th message on the image topic) the output gains, with
the image's header stamp and log time:

========================== =============================== ====================================
topic                      type                            content
========================== =============================== ====================================
``/facealign/gt/landmarks``  hri_msgs/msg/FacialLandmarks  70 REP-155 points; ``c`` = 1 inside
                                                           the image, 0 outside; **all 0 on a
                                                           marked frame**
``/facealign/gt/head_pose``  geometry_msgs/msg/PoseStamped PnP against the mean face with the
                                                           bag's CameraInfo (else default
                                                           intrinsics); not on marked frames
``/facealign/label/quality`` std_msgs/msg/String (JSON)    score, detector score, flip NME,
                                                           marked, reason
``/facealign/label/metadata`` std_msgs/msg/String (JSON)   once, at the end: teacher, options,
                                                           counts
========================== =============================== ====================================

A frame is **marked** when its score (:mod:`training.label.scoring`) is below ``min_score``,
when the teacher finds no face or reports a failure on it, or when the image cannot be decoded
(unsupported encoding, inconsistent size; counted as bad images). Marked frames keep their
landmark message, so the bag shows what the teacher saw, but with every confidence 0;
training (:func:`training.data.load_bag_arrays`) skips such rows. The landmark and head-pose
messages have the same form as the synthetic engine's (:mod:`training.synth.bagout`), so
``facealign train`` reads a labelled bag directly.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from facealign_ros import topics
from facealign_ros.bag import FACIAL_LANDMARKS, BagError, msg_class, within
from facealign_ros.face.pose import default_intrinsics, estimate_pose
from facealign_ros.messages import (
    MessageError,
    image_from_msg,
    landmarks_to_msg,
    pose_to_msg,
    stamp_ns,
)
from training.label.bagcopy import CopyBagWriter, RawBagReader, storage_of
from training.label.scoring import FrameLabel, Teacher, label_frame, no_face

LABEL_QUALITY = topics.LABEL_QUALITY
LABEL_METADATA = topics.LABEL_METADATA
OUTPUT_TOPICS: dict[str, str] = {
    topics.GT_LANDMARKS: FACIAL_LANDMARKS,
    topics.GT_HEAD_POSE: "geometry_msgs/msg/PoseStamped",
    LABEL_QUALITY: "std_msgs/msg/String",
    LABEL_METADATA: "std_msgs/msg/String",
}
REPLACED_TOPICS = (*OUTPUT_TOPICS, topics.GT_LANDMARKS_HF)
"""Ground truth already in the input: an error, or (with ``force``) dropped and replaced."""
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"


class LabelError(ValueError):
    """The input or output cannot be used; the message names the file (and topic)."""


@dataclass(frozen=True)
class LabelOptions:
    """Options of :func:`label_bag`.

    Attributes:
        image_topic: ``sensor_msgs/Image`` topic to label.
        camera_info_topic: ``sensor_msgs/CameraInfo`` topic for head pose (optional in the bag).
        min_score: frames scoring below this are marked, in ``[0, 1]``.
        every: label every ``every``-th image (1: all).
        storage: output storage, None: the input's.
        force: overwrite an existing output, and replace ground truth found in the input.
    """

    image_topic: str = topics.IMAGE
    camera_info_topic: str = topics.CAMERA_INFO
    min_score: float = 0.5
    every: int = 1
    storage: str | None = None
    force: bool = False

    def __post_init__(self) -> None:
        """Check the ranges."""
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.storage not in (None, "mcap", "sqlite3"):
            raise ValueError(f"storage must be mcap or sqlite3, got {self.storage!r}")


@dataclass
class LabelStats:
    """Counts and timings of one run (``wall_s`` and ``teacher_s`` in seconds).

    ``last_ns`` is the latest log time of the input, ns (the metadata's log time).
    """

    images: int = 0
    labelled: int = 0
    marked: int = 0
    no_face: int = 0
    bad_images: int = 0
    teacher_failures: int = 0
    messages_copied: int = 0
    teacher_s: float = 0.0
    wall_s: float = 0.0
    last_ns: int = 0
    bad_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counts plus ``marked_pct`` and ``frames_per_s`` (labelled frames / wall s)."""
        d = asdict(self)
        d["marked_pct"] = 100.0 * self.marked / self.labelled if self.labelled else 0.0
        d["frames_per_s"] = self.labelled / self.wall_s if self.wall_s > 0 else 0.0
        return d


def check_input(bag: RawBagReader, options: LabelOptions) -> None:
    """Refuse a bag without the image topic, or with ground truth unless ``force``.

    Raises:
        LabelError: naming the bag and the topic, and listing the topics present.
    """
    present = bag.topics
    listing = ", ".join(f"{t} ({s.msgtype})" for t, s in present.items()) or "none"
    where = f"bag {str(bag.path)!r}"
    image = present.get(options.image_topic)
    if image is None:
        raise LabelError(f"{where} has no image topic {options.image_topic!r} (choose one "
                         f"with --image-topic); its topics: {listing}")  # fmt: skip
    if image.msgtype not in (topics.IMAGE_TYPE, topics.COMPRESSED_IMAGE_TYPE):
        raise LabelError(f"{where}: topic {options.image_topic!r} is a {image.msgtype}, not a "
                         f"{topics.IMAGE_TYPE} (nor a CompressedImage); its topics: "
                         f"{listing}")  # fmt: skip
    if image.count == 0:
        raise LabelError(f"{where}: topic {options.image_topic!r} has no messages")
    if (found := [t for t in REPLACED_TOPICS if t in present]) and not options.force:
        raise LabelError(f"{where} has ground truth already ({', '.join(found)}); pass --force "
                         "to replace it")  # fmt: skip


def camera_model(bag: RawBagReader, topic: str) -> tuple[int, int, np.ndarray, np.ndarray | None]:
    """First usable CameraInfo on ``topic``: ``(width, height, K (3, 3), D or None)``.

    Returns ``(0, 0, eye, None)`` when the bag has none (the caller then uses default
    intrinsics).
    """
    if topic not in bag.topics or bag.topics[topic].msgtype != CAMERA_INFO_TYPE:
        return 0, 0, np.eye(3), None
    for _, _, msg in bag.messages(topic):
        k = np.asarray(msg.k, np.float64).reshape(3, 3)
        if k[0, 0] > 0 and k[1, 1] > 0:
            d = np.asarray(msg.d, np.float64)
            known = msg.distortion_model in ("plumb_bob", "rational_polynomial")
            dist = d if known and d.size in (4, 5, 8) and np.any(d != 0) else None
            return int(msg.width), int(msg.height), k, dist
    return 0, 0, np.eye(3), None


class _Labeller:
    """State of one labelling run (the writer, camera model and counters)."""

    def __init__(self, bag: RawBagReader, writer: CopyBagWriter, teacher: Teacher,
                 options: LabelOptions, stats: LabelStats) -> None:  # fmt: skip
        self.bag, self.writer, self.teacher = bag, writer, teacher
        self.options, self.stats = options, stats
        self.camera = camera_model(bag, options.camera_info_topic)

    def intrinsics(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The bag's K and D when its CameraInfo matches the image size, else defaults."""
        cw, ch, k, d = self.camera
        if (cw, ch) == (width, height):
            return k, d
        return default_intrinsics(width, height), None

    def image(self, conn: Any, log_ns: int, raw: bytes) -> None:
        """Label one image message and write its ground truth."""
        st = self.stats
        st.labelled += 1
        stamp, frame_id, width, height = log_ns, "", 0, 0
        try:
            msg = self.bag.decode(conn, raw)
            stamp, frame_id = stamp_ns(msg), str(msg.header.frame_id)
            # a raw image says its size (a bad one is still marked at it); a compressed one
            # has the decoded frame's
            width, height = int(getattr(msg, "width", 0)), int(getattr(msg, "height", 0))
            rgb = image_from_msg(msg)
            height, width = rgb.shape[:2]
        except (BagError, MessageError) as err:
            st.bad_images += 1
            if len(st.bad_examples) < 5:
                st.bad_examples.append(f"image at {log_ns} ns: {err}")
            label = no_face(f"bad image: {err}")
        else:
            t0 = time.perf_counter()
            label = label_frame(self.teacher, rgb)
            st.teacher_s += time.perf_counter() - t0
            st.no_face += int(label.reason.startswith("no face"))
            if label.reason.startswith("teacher failed"):
                st.teacher_failures += 1
                if len(st.bad_examples) < 5:
                    st.bad_examples.append(f"image at {log_ns} ns: {label.reason}")
        marked = bool(label.reason) or not label.score >= self.options.min_score
        st.marked += int(marked)
        self.write(label, marked, log_ns, stamp, frame_id, width, height)

    def write(self, label: FrameLabel, marked: bool, log_ns: int, stamp: int, frame_id: str,
              width: int, height: int) -> None:  # fmt: skip
        """Write the landmark, head-pose and quality messages of one labelled frame."""
        w = self.writer
        if width > 0 and height > 0:
            inside = np.all((label.points >= -0.5) & (label.points <= [width - 0.5,
                            height - 0.5]), axis=1)  # fmt: skip
            c = np.where(inside & (not marked), 1.0, 0.0)
            w.write(topics.GT_LANDMARKS, log_ns, landmarks_to_msg(msg_class, label.points, c,
                    width, height, stamp, frame_id))  # fmt: skip
            if not marked:
                k, d = self.intrinsics(width, height)
                pose = estimate_pose(label.points, k, c, d)
                if pose is not None:
                    w.write(topics.GT_HEAD_POSE, log_ns, pose_to_msg(msg_class, pose.rotation,
                            pose.translation, stamp, frame_id))  # fmt: skip
        quality = {
            "stamp_ns": stamp,
            "score": round(label.score, 4),
            "marked": marked,
            "detection": round(label.detection, 4),
            "flip_nme": None if np.isnan(label.flip_nme) else round(label.flip_nme, 5),
            "reason": label.reason,
        }
        w.write(LABEL_QUALITY, log_ns, msg_class("std_msgs/msg/String")(data=json.dumps(quality)))


def _open_writer(bag: RawBagReader, out: Path, options: LabelOptions) -> CopyBagWriter:
    """A writer for ``out`` with the input's topics (minus replaced ground truth) and ours."""
    writer = CopyBagWriter(out, storage=options.storage or storage_of(bag.path))
    writer.open()
    try:
        for conn in bag.connections:
            if conn.topic not in REPLACED_TOPICS:
                writer.add_copy(conn, bag.typestore)
        for topic, typename in OUTPUT_TOPICS.items():
            writer.add_topic(topic, typename)
    except BaseException:
        writer.abort()
        raise
    return writer


def _check_paths(in_path: Path, out_path: Path, force: bool) -> None:
    """Refuse an output that is the input, inside it or around it, or exists without ``force``.

    ``--force`` replaces only an existing *bag* (a folder with ``metadata.yaml``, or an
    ``.mcap``/``.db3`` file) or an empty folder, never another folder or file.
    """
    if within(out_path, in_path) or within(in_path, out_path):
        raise LabelError(f"output {str(out_path)!r} is the input bag, inside it or contains it")
    if out_path.exists() or out_path.is_symlink():
        if not force:
            raise LabelError(f"output {str(out_path)!r} exists; pass --force to overwrite it")
        is_bag = (out_path.is_dir() and (out_path / "metadata.yaml").is_file()) or (
            out_path.is_file() and out_path.suffix in (".mcap", ".db3")
        )
        empty = out_path.is_dir() and not any(out_path.iterdir())
        if not (is_bag or empty):
            raise LabelError(
                f"output {str(out_path)!r} exists and is not a bag; --force replaces only bags"
            )


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished bag ``tmp`` to ``out``, removing an old ``out`` first."""
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    elif out.exists() or out.is_symlink():
        out.unlink()
    tmp.rename(out)


def label_bag(
    in_path: str | Path,
    out_path: str | Path,
    teacher: Teacher,
    options: LabelOptions | None = None,
    teacher_info: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LabelStats:
    """Copy ``in_path`` to ``out_path`` adding teacher ground truth (see the module docstring).

    Args:
        in_path: input rosbag2 (directory, or a bare .mcap/.db3).
        out_path: output bag directory; written atomically.
        teacher: the running teacher.
        options: see :class:`LabelOptions`.
        teacher_info: what the teacher reported about itself (versions), for the metadata.
        progress: called with ``(images labelled, images to label)`` after each one.

    Returns:
        The run's :class:`LabelStats`.

    Raises:
        LabelError: unusable input (missing topic, ground truth present) or output path.
        facealign_ros.bag.BagError: the input is corrupt or truncated, or the output cannot be
            written (nothing is left at ``out_path``).
        training.label.teacher.TeacherError: the teacher failed.
    """
    t_wall = time.perf_counter()
    options = options or LabelOptions()
    in_path, out_path = Path(in_path), Path(out_path)
    _check_paths(in_path, out_path, options.force)
    stats = LabelStats()
    exists = out_path.exists() or out_path.is_symlink()
    tmp = out_path.with_name(f".{out_path.name}.labelled-{os.getpid()}") if exists else out_path
    with RawBagReader(in_path) as bag:
        image_topic = topics.image_topic_in(options.image_topic, bag.topics)
        if image_topic != options.image_topic:
            options = replace(options, image_topic=image_topic)  # JPEG/PNG frames only
        check_input(bag, options)
        total = -(-bag.topics[options.image_topic].count // options.every)
        writer = _open_writer(bag, tmp, options)
        try:
            _copy_and_label(bag, writer, _Labeller(bag, writer, teacher, options, stats), total,
                            progress)  # fmt: skip
            stats.wall_s = time.perf_counter() - t_wall
            meta = _metadata(in_path, options, stats, teacher_info or {})
            writer.write(LABEL_METADATA, stats.last_ns, msg_class("std_msgs/msg/String")(data=meta))
        except BaseException:
            writer.abort()
            raise
        writer.close()
    if tmp != out_path:
        _replace(tmp, out_path)
    stats.wall_s = time.perf_counter() - t_wall
    return stats


def _copy_and_label(bag: RawBagReader, writer: CopyBagWriter, run: _Labeller, total: int,
                    progress: Callable[[int, int], None] | None) -> None:  # fmt: skip
    """Copy every message (except replaced ground truth), labelling the chosen images."""
    stats, options = run.stats, run.options
    for conn, log_ns, raw in bag.raw_messages():
        stats.last_ns = max(stats.last_ns, log_ns)
        if conn.topic in REPLACED_TOPICS:
            continue
        writer.write_raw(conn.topic, log_ns, raw)
        stats.messages_copied += 1
        if conn.topic == options.image_topic:
            stats.images += 1
            if (stats.images - 1) % options.every == 0:
                run.image(conn, log_ns, raw)
                if progress is not None:
                    progress(stats.labelled, total)


def _metadata(in_path: Path, options: LabelOptions, stats: LabelStats, teacher: dict) -> str:
    """The JSON record written once on :data:`LABEL_METADATA`."""
    from training.label.scoring import FLIP_NME_AT_ZERO

    record = {
        "tool": "facealign label",
        "source": in_path.name,
        "teacher": {"model": "mediapipe face mesh (refined, 478 points)", **teacher},
        "options": asdict(options),
        "score": f"min(detector score, clip(1 - flip_nme / {FLIP_NME_AT_ZERO}, 0, 1))",
        "marked": "score < min_score, no face or bad image: every landmark confidence is 0",
        "landmarks": "REP-155 70: iBUG 68 + 68 right pupil + 69 left pupil (iris centres)",
        "stats": {k: v for k, v in stats.as_dict().items() if k not in ("bad_examples", "last_ns")},
    }
    return json.dumps(record, sort_keys=True)
