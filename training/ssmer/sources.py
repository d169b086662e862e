"""Unlabelled event windows streamed from rosbag2 recordings (SSMER's input).

:func:`find_sources` checks every bag up front (it opens, it has an
``event_camera_msgs/msg/EventPacket`` topic, the first packet's encoding decodes) and names the
file and topic of every problem. :func:`stream_windows` then reads one source packet by packet
(never the whole bag), decodes with the runtime's :class:`~facealign_ros.events.Decoder`, keeps
only the events of the last window in memory and yields :class:`Window` s every ``stride``.

Windows are in sensor time. Each carries a face-sized box: by default on the window's densest
event activity (:func:`activity_box`), because unlabelled recordings have no face boxes (in a
driver-monitoring or robot-facing view the moving head is where most events are); with
:class:`~training.ssmer.face_boxes.DetectorBoxes`, the face detector's box in the latest RGB frame
of the recording (its image topic, registered to the event sensor), mapped to the window by the
packets' header stamps (:class:`~facealign_ros.events.clock.SensorClock`), and the activity box
where there is none.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facealign_ros import topics
from facealign_ros.bag import BagError, BagReader
from facealign_ros.events import DecodeError, Decoder, concat_events
from facealign_ros.events.clock import SensorClock
from facealign_ros.face.crop import Box
from facealign_ros.messages import MessageError, image_from_msg, stamp_ns
from facealign_ros.tracking import activity_map
from training.ssmer.face_boxes import DetectorBoxes

LOG = logging.getLogger(__name__)
EVENT_PACKET = "event_camera_msgs/msg/EventPacket"
_RESTART_GAP_NS = 1_000_000_000  # a jump of the sensor time beyond this starts the windows over


class SourceError(ValueError):
    """A bag that cannot feed pretraining (the message names the file and topic)."""


@dataclass(frozen=True)
class Source:
    """One event topic of one bag.

    Attributes:
        path: bag directory or storage file.
        topic: EventPacket topic.
        encoding: the first packet's encoding.
        width: sensor width, px.
        height: sensor height, px.
        packets: number of packets on the topic.
        image_topic: the bag's RGB topic (``facealign_ros.topics.IMAGE``, else its one
            ``sensor_msgs/Image`` topic; "" = none), for detector boxes.
    """

    path: Path
    topic: str
    encoding: str
    width: int
    height: int
    packets: int
    image_topic: str = ""


@dataclass
class Window:
    """Events of one window, restricted to the region around its box.

    Attributes:
        events: ``EVENT_DTYPE`` events with ``t`` in ``[t_end - window, t_end)`` (sensor ns).
        t_end: window end, sensor ns.
        box: face-sized box (sensor px).
        width: sensor width, px.
        height: sensor height, px.
        box_source: ``"activity"`` or ``"detector"`` (where ``box`` comes from).
    """

    events: np.ndarray
    t_end: int
    box: Box
    width: int
    height: int
    box_source: str = "activity"


def expand_bag_paths(patterns: Sequence[str | Path]) -> list[Path]:
    """Bags from paths, globs and folders of bags (sorted within each pattern, de-duplicated).

    A folder that is not itself a bag (no ``metadata.yaml``) stands for the bags directly in
    it: sub-folders with ``metadata.yaml`` and ``.mcap``/``.db3`` files.

    Raises:
        FileNotFoundError: a pattern matches nothing.
    """
    out: list[Path] = []
    for pat in patterns:
        hits = sorted(glob.glob(str(pat))) or ([str(pat)] if Path(pat).exists() else [])
        if not hits:
            raise FileNotFoundError(f"no bag matches {str(pat)!r}")
        for h in map(Path, hits):
            if h.is_dir() and not (h / "metadata.yaml").is_file():
                inner = sorted(
                    p
                    for p in h.iterdir()
                    if (p.is_dir() and (p / "metadata.yaml").is_file())
                    or p.suffix in (".mcap", ".db3")
                )
                if not inner:
                    raise FileNotFoundError(f"folder {str(h)!r} holds no rosbag2 bag")
                hits_here = inner
            else:
                hits_here = [h]
            out += [p for p in hits_here if p not in out]
    return out


def inspect_bag(path: Path, topic: str = "") -> list[Source]:
    """The EventPacket sources of one bag (``topic``: only that one; empty: all).

    Raises:
        SourceError: unreadable bag, no (such) EventPacket topic, an empty topic, an unknown
            encoding or a first packet that does not decode.
    """
    try:
        with BagReader(path) as bag:
            available = bag.topics
            names = [t for t, s in available.items() if s.msgtype == EVENT_PACKET]
            if topic:
                if topic not in available:
                    raise SourceError(
                        f"bag {str(path)!r}: no topic {topic!r}; it has {sorted(available)}"
                    )
                if available[topic].msgtype != EVENT_PACKET:
                    raise SourceError(
                        f"bag {str(path)!r}, topic {topic!r}: type "
                        f"{available[topic].msgtype}, expected {EVENT_PACKET}"
                    )
                names = [topic]
            if not names:
                raise SourceError(
                    f"bag {str(path)!r}: no {EVENT_PACKET} topic; it has "
                    + ", ".join(f"{t} ({s.msgtype})" for t, s in available.items())
                )
            images = topics.image_topics(available)  # raw frames, else JPEG/PNG ones
            preferred = topics.image_topic_in(topics.IMAGE, images)
            image = preferred if preferred in images else images[0] if len(images) == 1 else ""
            return [_inspect_topic(bag, path, name, available[name].count, image) for name in names]
    except BagError as exc:
        raise SourceError(str(exc)) from exc


def _inspect_topic(bag: BagReader, path: Path, topic: str, count: int, image: str) -> Source:
    """Check the first packet of ``topic`` decodes; describe the source."""
    where = f"bag {str(path)!r}, topic {topic!r}"
    first = next(iter(bag.messages(topic)), None)
    if first is None or count == 0:
        raise SourceError(f"{where}: no packets")
    msg = first[2]
    try:
        dec = Decoder(str(msg.encoding), int(msg.width), int(msg.height))
        dec.decode_packet(msg)
    except (DecodeError, ValueError) as exc:
        raise SourceError(f"{where}: {exc}") from exc
    return Source(
        path, topic, str(msg.encoding), int(msg.width), int(msg.height), int(count), image
    )


def find_sources(
    paths: Sequence[Path], topic: str = "", skip_bad: bool = False
) -> tuple[list[Source], list[tuple[Path, str]]]:
    """Inspect every bag; returns ``(sources, skipped)`` with ``skipped`` = (path, reason).

    Raises:
        SourceError: a bad bag without ``skip_bad`` (the first one), or no usable source at all.
    """
    sources: list[Source] = []
    skipped: list[tuple[Path, str]] = []
    for p in paths:
        try:
            sources += inspect_bag(p, topic)
        except SourceError as exc:
            if not skip_bad:
                raise SourceError(f"{exc} (use --skip-bad to pretrain on the others)") from exc
            skipped.append((p, str(exc)))
            LOG.warning("skipping %s", exc)
    if not sources:
        raise SourceError("no usable event bag" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return sources, skipped


def activity_box(
    events: np.ndarray, width: int, height: int, min_side: float, cell: int = 8
) -> Box | None:
    """Square box on the densest event activity, or None without events.

    Events are counted in ``cell`` px cells and smoothed; cells above the median (the noise
    floor) by more than 10% of the peak's height weigh in; the box is centred on their weighted
    centroid with side 3x their largest weighted std (at least ``min_side``, at most the
    sensor's shorter side). On 20 synthetic training bags its side is 1.02-2.2x the ground-truth
    face box (10th-90th percentile, median 1.3x), its centre 0.28 sides off (median):
    ``python -m training.bench.activity_box --bags 'data/synth/train_10[0-1]*'``.
    """
    if events.size == 0:
        return None
    hist = activity_map(events, None, width, height, cell).astype(np.float32)  # (gh, gw)
    gh, gw = hist.shape
    hist = cv2.GaussianBlur(hist, (0, 0), 1.5)
    floor = float(np.median(hist))
    w = np.clip(hist - floor - 0.1 * (float(hist.max()) - floor), 0, None)
    total = float(w.sum())
    limit = float(min(width, height))
    if total <= 0:
        return Box(0.5 * width, 0.5 * height, limit)
    ys, xs = np.mgrid[0:gh, 0:gw]
    cx, cy = float((w * xs).sum()) / total, float((w * ys).sum()) / total
    sx = np.sqrt(float((w * (xs - cx) ** 2).sum()) / total)
    sy = np.sqrt(float((w * (ys - cy) ** 2).sum()) / total)
    side = float(np.clip(3.0 * max(sx, sy) * cell, min_side, max(min_side, limit)))
    return Box((cx + 0.5) * cell, (cy + 0.5) * cell, side)


def stream_windows(
    src: Source,
    window_ns: int,
    stride_ns: int,
    phase_ns: int = 0,
    min_events: int = 200,
    min_box_fraction: float = 0.15,
    margin: float = 2.3,
    face_boxes: DetectorBoxes | None = None,
) -> Iterator[Window]:
    """Windows of one source every ``stride_ns`` (sensor time), read packet by packet.

    Args:
        src: the source (from :func:`find_sources`).
        window_ns: window length, ns.
        stride_ns: spacing of window ends, ns.
        phase_ns: offset of the first window end after ``first event + window_ns``.
        min_events: windows with fewer events are skipped (a still scene teaches nothing).
        min_box_fraction: smallest box side as a fraction of the sensor's shorter side.
        margin: events are kept within ``margin`` x the box side around its centre (room for
            the views' crop jitter).
        face_boxes: boxes from the face detector on ``src.image_topic`` (frames of the event
            sensor's size; others, undecodable ones and a source without an image topic give
            activity boxes); None: activity boxes only.

    Raises:
        BagError: the bag turns out corrupt while reading (callers decide to skip it).
    """
    dec = Decoder(src.encoding, src.width, src.height)
    min_side = min_box_fraction * min(src.width, src.height)
    chunks: list[np.ndarray] = []
    next_end: int | None = None
    last_t = None
    rgb_boxes = face_boxes if src.image_topic else None  # None: activity boxes only
    clock = SensorClock()
    if rgb_boxes is not None:
        rgb_boxes.reset()
    wanted = [src.topic] if rgb_boxes is None else [src.topic, src.image_topic]
    with BagReader(src.path) as bag:
        for topic, _, msg in bag.messages(wanted):
            if topic != src.topic:  # an image: wanted only with rgb_boxes
                assert rgb_boxes is not None
                _observe_frame(rgb_boxes, msg, src)
                continue
            ev = dec.decode_packet(msg)
            if ev.size == 0:
                continue
            if last_t is not None and abs(int(ev["t"][0]) - last_t) > _RESTART_GAP_NS:
                # the sensor clock restarted or jumped (a forward jump would otherwise be
                # walked through one empty window per stride: 10^11 of them for a 4e18 ns jump)
                chunks, next_end = [], None
                clock.reset()
            if rgb_boxes is not None:
                clock.observe(stamp_ns(msg), int(ev["t"][0]))
            last_t = int(ev["t"][-1])
            chunks.append(ev)
            if next_end is None:
                next_end = int(ev["t"][0]) + window_ns + phase_ns
            while next_end is not None and last_t >= next_end:
                win = _cut(chunks, next_end - window_ns, next_end)
                chunks = [c for c in chunks if int(c["t"][-1]) >= next_end + stride_ns - window_ns]
                if win.size >= min_events:
                    box = None
                    if rgb_boxes is not None and clock.ready:
                        box = rgb_boxes.box_at(int(clock.to_ros(next_end)))
                    w = _window(win, next_end, src, min_side, margin, box)
                    if w is not None:
                        yield w
                next_end += stride_ns


def _observe_frame(face_boxes: DetectorBoxes, msg: object, src: Source) -> None:
    """Run the detector on one image message (frames of another size or encoding: skipped)."""
    try:
        rgb = image_from_msg(msg)
    except MessageError:
        return
    if rgb.shape[:2] != (src.height, src.width):  # not registered to the event sensor
        return
    face_boxes.observe(stamp_ns(msg), rgb)


def _cut(chunks: list[np.ndarray], t0: int, t1: int) -> np.ndarray:
    """Events with ``t0 <= t < t1`` from time-ordered chunks."""
    parts = []
    for c in chunks:
        if int(c["t"][-1]) < t0 or int(c["t"][0]) >= t1:
            continue
        i, j = np.searchsorted(c["t"], [t0, t1], side="left")
        parts.append(c[i:j])
    return concat_events(parts) if parts else concat_events([])


def _window(
    ev: np.ndarray, t_end: int, src: Source, min_side: float, margin: float, box: Box | None = None
) -> Window:
    """A :class:`Window` with the events near ``box`` (None: its activity box)."""
    source = "detector" if box is not None else "activity"
    if box is None:
        box = activity_box(ev, src.width, src.height, min_side)
        assert box is not None  # ev is non-empty
    half = 0.5 * margin * box.side
    keep = (
        (ev["x"] >= box.cx - half)
        & (ev["x"] < box.cx + half)
        & (ev["y"] >= box.cy - half)
        & (ev["y"] < box.cy + half)
    )
    return Window(np.ascontiguousarray(ev[keep]), int(t_end), box, src.width, src.height, source)
