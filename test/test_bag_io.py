"""Tests for facealign_ros.bag: packaged .msg definitions, typestore helpers, bag round trips."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Nodetype
from rosbags.typesys import get_types_from_msg

from facealign_ros.bag import (
    EVENT_PACKET,
    FACIAL_LANDMARKS,
    IDS_LIST,
    NORMALIZED_POINT,
    NORMALIZED_ROI,
    NUM_FACIAL_LANDMARKS,
    BagError,
    BagReader,
    BagWriter,
    Storage,
    TopicSummary,
    make_event_packet,
    make_header,
    make_time,
    msg_class,
    msg_definitions,
    normalize_typename,
    time_to_ns,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

STORAGES: list[Storage] = ["mcap", "sqlite3"]
T0 = 1_700_000_000_000_000_000
IMAGE = "sensor_msgs/msg/Image"
POSE = "geometry_msgs/msg/PoseStamped"
TOPICS = {
    "/events": EVENT_PACKET,
    "/facealign/landmarks": FACIAL_LANDMARKS,
    "/humans/faces/tracked": IDS_LIST,
    "/image": IMAGE,
    "/facealign/head_pose": POSE,
}


# --------------------------------------------------------------------------- fixtures


def _f32(rng: np.random.Generator, n: int) -> list[float]:
    """Floats exactly representable as float32, so they survive a float32 field unchanged."""
    return [float(v) for v in rng.random(n, dtype=np.float32)]


def _landmarks(rng: np.random.Generator, stamp_ns: int) -> Any:
    point = msg_class(NORMALIZED_POINT)
    xs, ys, cs = (_f32(rng, NUM_FACIAL_LANDMARKS) for _ in range(3))
    return msg_class(FACIAL_LANDMARKS)(
        header=make_header(stamp_ns, "camera_optical"),
        landmarks=[point(x=x, y=y, c=c) for x, y, c in zip(xs, ys, cs, strict=True)],
        height=480,
        width=640,
    )


def _image(rng: np.random.Generator, stamp_ns: int) -> Any:
    height, width = 4, 6
    return msg_class(IMAGE)(
        header=make_header(stamp_ns, "camera_optical"),
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=width * 3,
        data=rng.integers(0, 256, height * width * 3, dtype=np.uint8),
    )


def _pose(rng: np.random.Generator, stamp_ns: int) -> Any:
    position = msg_class("geometry_msgs/msg/Point")(*(float(v) for v in rng.normal(size=3)))
    quat = rng.normal(size=4)
    quat /= np.linalg.norm(quat)
    orientation = msg_class("geometry_msgs/msg/Quaternion")(*(float(v) for v in quat))
    return msg_class(POSE)(
        header=make_header(stamp_ns, "camera_optical"),
        pose=msg_class("geometry_msgs/msg/Pose")(position=position, orientation=orientation),
    )


def _expected_messages(seed: int = 0) -> list[tuple[str, int, Any]]:
    """Deterministic messages on five topics, with interleaved timestamps."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, int, Any]] = []
    for i in range(6):
        stamp = T0 + i * 10_000_000
        payload = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8)
        packet = make_event_packet(payload, 640, 480, "evt3", i, 0, stamp, "camera_optical")
        out.append(("/events", stamp + 1, packet))
        out.append(("/image", stamp + 2, _image(rng, stamp)))
        if i % 2 == 0:
            out.append(("/facealign/landmarks", stamp + 3, _landmarks(rng, stamp)))
            out.append(("/facealign/head_pose", stamp + 3, _pose(rng, stamp)))
            ids = msg_class(IDS_LIST)(header=make_header(stamp), ids=[f"f{i}", "abcde"][: i % 3])
            out.append(("/humans/faces/tracked", stamp + 4, ids))
    return out


def _write_bag(path: Path, storage: Storage, messages: list[tuple[str, int, Any]]) -> None:
    """Write ``messages`` topic by topic, so storage order differs from time order."""
    with BagWriter(path, storage=storage) as bag:
        for topic, typename in TOPICS.items():
            bag.add_topic(topic, typename)
        for topic in TOPICS:
            for name, stamp, msg in messages:
                if name == topic:
                    bag.write(topic, stamp, msg)


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest) -> Storage:
    """Both rosbag2 storage plugins."""
    return cast("Storage", request.param)


@pytest.fixture
def bag_path(tmp_path: Path, storage: Storage) -> Path:
    """A fixture bag with every topic of TOPICS."""
    path = tmp_path / "fixture_bag"
    _write_bag(path, storage, _expected_messages())
    return path


def assert_msg_equal(got: Any, want: Any, where: str = "msg") -> None:
    """Field-by-field equality of rosbags messages (numpy arrays compared by value and dtype)."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), where
        assert got.dtype == want.dtype, where
        np.testing.assert_array_equal(got, want, err_msg=where)
    elif dataclasses.is_dataclass(want):
        assert got.__msgtype__ == want.__msgtype__, where
        for field in dataclasses.fields(want):
            name = field.name
            assert_msg_equal(getattr(got, name), getattr(want, name), f"{where}.{name}")
    elif isinstance(want, list):
        assert isinstance(got, list), where
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_msg_equal(g, w, f"{where}[{i}]")
    else:
        assert type(got) is type(want), f"{where}: {type(got)} != {type(want)}"
        assert got == want, f"{where}: {got!r} != {want!r}"


def _sorted_by_time(messages: list[tuple[str, int, Any]]) -> list[tuple[str, int, Any]]:
    return sorted(messages, key=lambda m: m[1])


# --------------------------------------------------------------------------- definitions


def test_packaged_definitions_are_exactly_ours() -> None:
    assert set(msg_definitions()) == {
        EVENT_PACKET,
        IDS_LIST,
        NORMALIZED_POINT,
        NORMALIZED_ROI,
        FACIAL_LANDMARKS,
    }


@pytest.mark.parametrize(
    ("typename", "fields"),
    [
        (
            EVENT_PACKET,
            ["header", "height", "width", "seq", "time_base", "encoding", "is_bigendian", "events"],
        ),
        (IDS_LIST, ["header", "ids"]),
        (NORMALIZED_POINT, ["x", "y", "c"]),
        (NORMALIZED_ROI, ["header", "xmin", "ymin", "xmax", "ymax", "c"]),
        (FACIAL_LANDMARKS, ["header", "landmarks", "height", "width"]),
    ],
)
def test_msg_texts_parse_with_exact_field_order(typename: str, fields: list[str]) -> None:
    parsed = get_types_from_msg(msg_definitions()[typename], typename)
    assert [name for name, _ in parsed[typename][1]] == fields


def test_field_types_match_upstream() -> None:
    defs = {name: get_types_from_msg(text, name)[name] for name, text in msg_definitions().items()}
    packet = dict(defs[EVENT_PACKET][1])
    assert packet["header"] == (Nodetype.NAME, "std_msgs/msg/Header")
    assert packet["seq"] == (Nodetype.BASE, ("uint64", 0))
    assert packet["time_base"] == (Nodetype.BASE, ("uint64", 0))
    assert packet["is_bigendian"] == (Nodetype.BASE, ("bool", 0))
    assert packet["events"] == (Nodetype.SEQUENCE, ((Nodetype.BASE, ("uint8", 0)), 0))
    assert dict(defs[IDS_LIST][1])["ids"] == (
        Nodetype.SEQUENCE,
        ((Nodetype.BASE, ("string", 0)), 0),
    )
    assert all(t == (Nodetype.BASE, ("float32", 0)) for _, t in defs[NORMALIZED_POINT][1])
    landmarks = dict(defs[FACIAL_LANDMARKS][1])
    assert landmarks["landmarks"] == (Nodetype.ARRAY, ((Nodetype.NAME, NORMALIZED_POINT), 70))
    assert landmarks["height"] == landmarks["width"] == (Nodetype.BASE, ("uint32", 0))


def test_facial_landmark_constants() -> None:
    consts = get_types_from_msg(msg_definitions()[FACIAL_LANDMARKS], FACIAL_LANDMARKS)
    table = {name: value for name, typ, value in consts[FACIAL_LANDMARKS][0] if typ == "uint8"}
    assert len(consts[FACIAL_LANDMARKS][0]) == NUM_FACIAL_LANDMARKS == len(table)
    assert sorted(table.values()) == list(range(NUM_FACIAL_LANDMARKS))
    cls = msg_class(FACIAL_LANDMARKS)
    known = {
        "RIGHT_EAR": 0,
        "MENTON": 8,
        "LEFT_PROFILE_7": 9,
        "LEFT_EAR": 16,
        "RIGHT_EYEBROW_OUTSIDE": 17,
        "NOSE": 30,
        "RIGHT_EYE_OUTSIDE": 36,
        "RIGHT_EYE_BOTTOM_1": 41,
        "LEFT_EYE_OUTSIDE": 45,
        "LEFT_EYE_BOTTOM_1": 46,
        "MOUTH_OUTER_RIGHT": 48,
        "MOUTH_INNER_BOTTOM_1": 67,
        "RIGHT_PUPIL": 68,
        "LEFT_PUPIL": 69,
    }
    for name, value in known.items():
        assert table[name] == value
        assert getattr(cls, name) == value


@pytest.mark.parametrize(
    "typename",
    [IMAGE, "sensor_msgs/msg/CameraInfo", POSE, "tf2_msgs/msg/TFMessage", "sensor_msgs/Image"],
)
def test_base_store_types_exist(typename: str) -> None:
    assert msg_class(typename).__msgtype__ == normalize_typename(typename)


def test_msg_class_errors() -> None:
    with pytest.raises(KeyError, match="no_such_msgs/msg/Foo"):
        msg_class("no_such_msgs/msg/Foo")
    with pytest.raises(ValueError, match="invalid message type name"):
        msg_class("Image")


# --------------------------------------------------------------------------- constructors


@settings(derandomize=True, database=None)
@given(st.integers(min_value=-(2**31) * 10**9, max_value=(2**31) * 10**9 - 1))
def test_time_round_trip(stamp_ns: int) -> None:
    stamp = make_time(stamp_ns)
    assert 0 <= stamp.nanosec < 10**9
    assert time_to_ns(stamp) == stamp_ns


def test_make_header_and_time_range() -> None:
    header = make_header(1_500_000_000, "cam")
    assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (1, 500_000_000, "cam")
    with pytest.raises(ValueError, match="int32"):
        make_time(2**31 * 10**9)


def test_make_event_packet_views_payload() -> None:
    words = np.array([0x8001, 0x6002], dtype="<u2")
    packet = make_event_packet(words, 1280, 720, "evt3", 7, 0, 42, "cam", is_bigendian=False)
    assert packet.events.dtype == np.uint8
    np.testing.assert_array_equal(packet.events, [0x01, 0x80, 0x02, 0x60])
    assert (packet.width, packet.height, packet.seq, packet.encoding) == (1280, 720, 7, "evt3")
    assert time_to_ns(packet.header.stamp) == 42
    assert make_event_packet(b"", 1, 1, "mono", 0, 0, 0).events.size == 0
    with pytest.raises(ValueError, match="width"):
        make_event_packet(b"", -1, 1, "evt3", 0, 0, 0)
    with pytest.raises(ValueError, match="seq"):
        make_event_packet(b"", 1, 1, "evt3", 2**64, 0, 0)


# --------------------------------------------------------------------------- round trips


def test_round_trip_field_by_field(bag_path: Path) -> None:
    want = _sorted_by_time(_expected_messages())
    with BagReader(bag_path) as bag:
        counts = {t: sum(1 for m in want if m[0] == t) for t in TOPICS}
        assert bag.topics == {t: TopicSummary(TOPICS[t], counts[t]) for t in TOPICS}
        assert bag.message_count == len(want)
        got = list(bag.messages())
    assert [(t, s) for t, s, _ in got] == [(t, s) for t, s, _ in want]
    for (topic, stamp, g), (_, _, w) in zip(got, want, strict=True):
        assert_msg_equal(g, w, f"{topic}@{stamp}")
    packet = next(m for t, _, m in got if t == "/events")
    assert isinstance(packet.events, np.ndarray)
    assert packet.events.dtype == np.uint8


def test_multi_topic_iteration_is_time_ordered_and_filtered(bag_path: Path) -> None:
    want = _sorted_by_time(_expected_messages())
    chosen = ["/facealign/landmarks", "/events"]
    start, stop = T0 + 10_000_000, T0 + 40_000_000
    with BagReader(bag_path) as bag:
        stream = bag.messages(chosen, start_ns=start, stop_ns=stop)
        assert iter(stream) is stream  # lazy iterator, not a list
        got = [(t, s) for t, s, _ in stream]
        single = [(t, s) for t, s, _ in bag.messages("/humans/faces/tracked")]
    expected = [(t, s) for t, s, _ in want if t in chosen and start <= s < stop]
    assert got == expected
    assert {t for t, _ in got} == set(chosen)
    assert [s for _, s in got] == sorted(s for _, s in got)
    assert single == [(t, s) for t, s, _ in want if t == "/humans/faces/tracked"]


def test_fresh_anyreader_reads_stored_definitions(bag_path: Path) -> None:
    want = _sorted_by_time(_expected_messages())
    with AnyReader([bag_path]) as reader:  # no default typestore: definitions come from the bag
        assert reader.typestore.types[FACIAL_LANDMARKS].LEFT_PUPIL == 69
        got = [
            (conn.topic, stamp, reader.deserialize(raw, conn.msgtype))
            for conn, stamp, raw in reader.messages()
        ]
    assert len(got) == len(want)
    for (topic, stamp, g), (w_topic, w_stamp, w) in zip(got, want, strict=True):
        assert (topic, stamp) == (w_topic, w_stamp)
        assert_msg_equal(g, w, f"{topic}@{stamp}")  # classes from the bag's store, same fields


@pytest.mark.parametrize("drop", [[EVENT_PACKET, FACIAL_LANDMARKS], None], ids=["some", "all"])
def test_reader_falls_back_to_our_definitions(tmp_path: Path, drop: list[str] | None) -> None:
    path = tmp_path / "nodefs"
    want = _sorted_by_time(_expected_messages())
    _write_bag(path, "sqlite3", want)
    with sqlite3.connect(path / "nodefs.db3") as db:
        if drop is None:
            db.execute("DELETE FROM message_definitions")
        else:
            db.executemany(
                "DELETE FROM message_definitions WHERE topic_type=?", [(t,) for t in drop]
            )
    with BagReader(path) as bag:
        got = list(bag.messages())
    assert len(got) == len(want)
    for (_, _, g), (topic, _, w) in zip(got, want, strict=True):
        assert_msg_equal(g, w, topic)


def test_copy_through_keeps_messages(bag_path: Path, tmp_path: Path, storage: Storage) -> None:
    """Messages read from a bag (the bag's own classes) can be written again unchanged."""
    copy = tmp_path / "copy"
    with BagReader(bag_path) as src, BagWriter(copy, storage=storage) as dst:
        for topic, summary in src.topics.items():
            dst.add_topic(topic, summary.msgtype)
        for topic, stamp, msg in src.messages():
            dst.write(topic, stamp, msg)
    want = _sorted_by_time(_expected_messages())
    with BagReader(copy) as bag:
        got = list(bag.messages())
    assert [(t, s) for t, s, _ in got] == [(t, s) for t, s, _ in want]
    for (topic, _, g), (_, _, w) in zip(got, want, strict=True):
        assert_msg_equal(g, w, topic)


def test_reader_accepts_bare_storage_file(tmp_path: Path) -> None:
    path = tmp_path / "bare"
    _write_bag(path, "mcap", _expected_messages())
    with BagReader(path / "bare.mcap") as bag:
        assert bag.message_count == len(_expected_messages())


def test_empty_bag(tmp_path: Path, storage: Storage) -> None:
    with BagWriter(tmp_path / "empty", storage=storage) as bag:
        bag.add_topic("/ids", "hri_msgs/IdsList")
    with BagReader(tmp_path / "empty") as bag:
        assert bag.topics == {"/ids": TopicSummary(IDS_LIST, 0)}
        assert list(bag.messages()) == []


# --------------------------------------------------------------------------- errors


def test_writer_refuses_existing_output(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("keep me")
    for name in ("dir", "file"):
        with pytest.raises(BagError, match=f"{name}.*exists"):
            BagWriter(tmp_path / name)
    assert (tmp_path / "file").read_text() == "keep me"
    writer = BagWriter(tmp_path / "late")
    (tmp_path / "late").mkdir()
    with pytest.raises(BagError, match="exists"):
        writer.open()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file", "late"]


def test_writer_rejects_unknown_storage(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="storage"):
        BagWriter(tmp_path / "x", storage="rosbag1")  # type: ignore[arg-type]


def _run_writer(out: Path, storage: Storage, steps: list[Callable[[BagWriter], object]]) -> None:
    """Open a writer on ``out`` and apply ``steps`` inside its ``with`` block."""
    with BagWriter(out, storage=storage) as bag:
        for step in steps:
            step(bag)


def _boom(_: BagWriter) -> None:
    raise RuntimeError("boom")


def test_exception_inside_writer_leaves_nothing(tmp_path: Path, storage: Storage) -> None:
    out = tmp_path / "sub" / "bag"
    _, stamp, packet = _expected_messages()[0]
    seen: list[list[str]] = []
    steps: list[Callable[[BagWriter], object]] = [
        lambda bag: bag.add_topic("/events", EVENT_PACKET),
        lambda bag: bag.write("/events", stamp, packet),
        lambda _: seen.append([p.name for p in (tmp_path / "sub").iterdir()]),
        _boom,
    ]
    with pytest.raises(RuntimeError, match="boom"):
        _run_writer(out, storage, steps)
    assert len(seen[0]) == 1  # the partial bag existed while writing, as a hidden sibling
    assert seen[0][0].startswith(".bag.")
    assert not out.exists()
    assert list((tmp_path / "sub").iterdir()) == []


_SHORT_LANDMARKS = _landmarks(np.random.default_rng(1), T0)
_SHORT_LANDMARKS.landmarks = _SHORT_LANDMARKS.landmarks[:69]  # fixed [70] array: invalid


@pytest.mark.parametrize(
    ("steps", "match"),
    [
        ([lambda b: b.write("/nope", T0, _SHORT_LANDMARKS)], "add_topic"),
        ([lambda b: b.add_topic("/x", "no_msgs/msg/Nothing")], "unknown message type"),
        (
            [lambda b: b.add_topic("/l", FACIAL_LANDMARKS), lambda b: b.add_topic("/l", IDS_LIST)],
            "already added",
        ),
        (
            [lambda b: b.add_topic("/i", IDS_LIST), lambda b: b.write("/i", T0, _SHORT_LANDMARKS)],
            "has type",
        ),
        (
            [lambda b: b.add_topic("/l", FACIAL_LANDMARKS), lambda b: b.write("/l", -1, None)],
            "negative timestamp",
        ),
        (
            [
                lambda b: b.add_topic("/l", FACIAL_LANDMARKS),
                lambda b: b.write("/l", T0, _SHORT_LANDMARKS),
            ],
            "cannot serialise",
        ),
    ],
    ids=["no-topic", "unknown-type", "twice", "wrong-type", "negative-time", "bad-array"],
)
def test_writer_usage_errors_leave_nothing(
    tmp_path: Path, steps: list[Callable[[BagWriter], object]], match: str
) -> None:
    with pytest.raises(BagError, match=match):
        _run_writer(tmp_path / "bag", "mcap", steps)
    assert list(tmp_path.iterdir()) == []


def test_reader_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing_bag"
    with pytest.raises(BagError, match=r"missing_bag.*does not exist"), BagReader(missing):
        pass


def test_reader_garbage_directory(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "data.bin").write_bytes(bytes(range(256)))
    with pytest.raises(BagError, match=r"garbage.*not a rosbag2 bag"), BagReader(garbage):
        pass
    (garbage / "metadata.yaml").write_text("{{{ not: yaml: [")
    with pytest.raises(BagError, match=r"garbage.*cannot open"), BagReader(garbage):
        pass
    (garbage / "notes.txt").write_text("hello")
    with pytest.raises(BagError, match=r"notes\.txt"), BagReader(garbage / "notes.txt"):
        pass


def test_reader_truncated_metadata(bag_path: Path) -> None:
    meta = bag_path / "metadata.yaml"
    text = meta.read_text()
    meta.write_text(text[:200])  # cut mid-line: not YAML any more
    with pytest.raises(BagError, match=r"fixture_bag.*cannot open"), BagReader(bag_path):
        pass
    meta.write_text("\n".join(text.splitlines()[:12]))  # valid YAML, keys missing
    with pytest.raises(BagError, match=r"fixture_bag.*cannot open.*missing"), BagReader(bag_path):
        pass


def test_reader_truncated_storage(tmp_path: Path) -> None:
    path = tmp_path / "cut"
    _write_bag(path, "mcap", _expected_messages())
    data = path / "cut.mcap"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(BagError, match="cut"), BagReader(path) as bag:
        list(bag.messages())


def test_reader_unknown_topic_fails_at_call(bag_path: Path) -> None:
    with (
        BagReader(bag_path) as bag,
        pytest.raises(BagError, match=r"unknown topic.*'/nope'.*/events"),
    ):
        bag.messages(["/events", "/nope"])
    with pytest.raises(RuntimeError, match="not open"):
        bag.messages()
