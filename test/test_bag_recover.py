"""Tests for `facealign recover`: mcap recordings cut off by a killed recorder, saved to new bags.

The fixture recording is written with BagWriter (rosbags closes a chunk after ~1 MiB, so it has
several chunks); the tests cut or alter copies of its .mcap at places found by a small MCAP
walker of their own, and compare what recover saves against the original read by BagReader.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import zlib
from typing import TYPE_CHECKING, Any, NamedTuple

import lz4.frame
import numpy as np
import pytest

from facealign_ros.bag import (
    EVENT_PACKET,
    IDS_LIST,
    BagError,
    BagReader,
    BagWriter,
    get_typestore,
    make_event_packet,
    make_header,
    msg_class,
    recover_bag,
)
from facealign_ros.bag.mcap_scan import zstd
from facealign_ros.messages import image_to_msg

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

MAGIC = b"\x89MCAP0\r\n"
CHUNK, DATA_END, HEADER, MESSAGE = 0x06, 0x0F, 0x01, 0x05
T0 = 1_700_000_000_000_000_000
IMAGE = "sensor_msgs/msg/Image"
TOPICS = {"/events": EVENT_PACKET, "/camera/image_raw": IMAGE, "/humans/faces/tracked": IDS_LIST}
Message = tuple[str, int, bytes]  # topic, log time (ns), CDR of the deserialised message


# --------------------------------------------------------------------------- MCAP walking


class Record(NamedTuple):
    offset: int  # of the opcode byte
    opcode: int
    body: bytes

    @property
    def end(self) -> int:
        return self.offset + 9 + len(self.body)


def records(data: bytes) -> list[Record]:
    """Top-level records of a complete mcap file, up to and including DataEnd."""
    out, pos = [], len(MAGIC)
    while True:
        opcode, length = struct.unpack_from("<BQ", data, pos)
        out.append(Record(pos, opcode, data[pos + 9 : pos + 9 + length]))
        pos += 9 + length
        if opcode == DATA_END:
            return out


def chunk_parts(body: bytes) -> tuple[tuple[int, int, int, int], str, bytes]:
    """A chunk body -> ((start ns, end ns, uncompressed size, crc), compression, records)."""
    head = struct.unpack_from("<QQQI", body)
    (n,) = struct.unpack_from("<I", body, 28)
    compression = body[32 : 32 + n].decode()
    (size,) = struct.unpack_from("<Q", body, 32 + n)
    return head, compression, body[40 + n : 40 + n + size]


def inner_records(chunk_records: bytes) -> list[Record]:
    out, pos = [], 0
    while pos < len(chunk_records):
        opcode, length = struct.unpack_from("<BQ", chunk_records, pos)
        out.append(Record(pos, opcode, chunk_records[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return out


def pack_record(opcode: int, body: bytes) -> bytes:
    return struct.pack("<BQ", opcode, len(body)) + body


def pack_chunk(body: bytes, compression: str, crc: int | None) -> bytes:
    """Re-pack an uncompressed chunk body with ``compression`` and ``crc`` (None: the right one)."""
    (start, end, size, _), _, raw = chunk_parts(body)
    packed = {"": bytes, "lz4": lz4.frame.compress, "zstd": zstd.compress}[compression](raw)
    crc = zlib.crc32(raw) if crc is None else crc
    name = compression.encode()
    head = struct.pack("<QQQI", start, end, size, crc) + struct.pack("<I", len(name)) + name
    return head + struct.pack("<Q", len(packed)) + packed


class Layout(NamedTuple):
    data: bytes  # the complete file
    chunks: list[Record]
    messages_per_chunk: list[int]
    header_end: int
    data_end: Record


def layout_of(mcap: Path) -> Layout:
    data = mcap.read_bytes()
    recs = records(data)
    chunks = [r for r in recs if r.opcode == CHUNK]
    counts = [
        sum(r.opcode == MESSAGE for r in inner_records(chunk_parts(c.body)[2])) for c in chunks
    ]
    return Layout(data, chunks, counts, recs[0].end, recs[-1])


# --------------------------------------------------------------------------- fixtures


def _serialised(messages: list[tuple[str, int, Any]]) -> list[Message]:
    store = get_typestore()
    return sorted((t, s, bytes(store.serialize_cdr(m, m.__msgtype__))) for t, s, m in messages)


def read_bag(path: Path) -> list[Message]:
    with BagReader(path) as bag:
        return _serialised(list(bag.messages()))


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Message]]:
    """A 3-topic mcap bag of ~3.4 MB (4 chunks) and its messages in write order."""
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("rec") / "recording"
    written: list[tuple[str, int, Any]] = []
    with BagWriter(path) as bag:
        for topic, typename in TOPICS.items():
            bag.add_topic(topic, typename)
        for i in range(12):
            stamp = T0 + i * 10_000_000
            payload = rng.integers(0, 256, 200_000, dtype=np.uint8)
            frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            ids = msg_class(IDS_LIST)(header=make_header(stamp + 2), ids=[f"face{i}"][: i % 2])
            written += [
                ("/events", stamp, make_event_packet(payload, 640, 480, "evt3", i, 0, stamp)),
                ("/camera/image_raw", stamp + 1, image_to_msg(msg_class, frame, stamp + 1, "cam")),
                ("/humans/faces/tracked", stamp + 2, ids),
            ]
            for topic, stamp_ns, msg in written[-3:]:
                bag.write(topic, stamp_ns, msg)
    store = get_typestore()
    in_order = [(t, s, bytes(store.serialize_cdr(m, m.__msgtype__))) for t, s, m in written]
    assert len(layout_of(path / "recording.mcap").chunks) >= 3  # the tests need several
    return path, in_order


@pytest.fixture(scope="module")
def layout(recording: tuple[Path, list[Message]]) -> Layout:
    return layout_of(recording[0] / "recording.mcap")


def crashed_copy(dst: Path, data: bytes) -> Path:
    """A bag directory like a killed recorder leaves: .mcap holding ``data``, no metadata.yaml."""
    dst.mkdir()
    (dst / "recording.mcap").write_bytes(data)
    return dst


def first_chunks(layout: Layout, expected: list[Message], n: int) -> list[Message]:
    """The messages of the first ``n`` chunks, sorted like read_bag."""
    return sorted(expected[: sum(layout.messages_per_chunk[:n])])


# --------------------------------------------------------------------------- tests


def test_fixture_is_read_back_by_bag_reader(recording: tuple[Path, list[Message]]) -> None:
    path, expected = recording
    assert read_bag(path) == sorted(expected)


CUTS: dict[str, Callable[[Layout], tuple[int, int]]] = {
    # name: layout -> (file length after the cut, number of whole chunks before it)
    "complete file": lambda lay: (len(lay.data), len(lay.chunks)),
    "inside the summary": lambda lay: (lay.data_end.end + 20, len(lay.chunks)),
    "just before the footer (DataEnd)": lambda lay: (lay.data_end.offset, len(lay.chunks)),
    "after the last chunk": lambda lay: (lay.chunks[-1].end, len(lay.chunks)),
    "middle of the second chunk": lambda lay: ((lay.chunks[1].offset + lay.chunks[1].end) // 2, 1),
    "middle of the last chunk": lambda lay: (lay.chunks[-1].end - 1000, len(lay.chunks) - 1),
    "inside a record header": lambda lay: (lay.chunks[2].offset + 5, 2),
}


@pytest.mark.parametrize("cut", CUTS, ids=list(CUTS))
def test_recover_saves_exactly_the_whole_chunks(
    recording: tuple[Path, list[Message]], layout: Layout, tmp_path: Path, cut: str
) -> None:
    size, whole = CUTS[cut](layout)
    src = crashed_copy(tmp_path / "crashed", layout.data[:size])
    before = hashlib.sha256((src / "recording.mcap").read_bytes()).hexdigest()
    report = recover_bag(src, tmp_path / "saved")
    expected = first_chunks(layout, recording[1], whole)
    assert read_bag(tmp_path / "saved") == expected
    assert report.messages == len(expected)
    assert {t: s.count for t, s in report.topics.items()} == {
        t: sum(m[0] == t for m in expected) for t in TOPICS
    }
    assert {t: s.msgtype for t, s in report.topics.items()} == TOPICS
    (scan,) = report.files
    assert scan.size_bytes == size
    if size > layout.data_end.offset:  # DataEnd read: the data section is complete
        assert scan.data_end and scan.stop == "" and report.lost_bytes == 0
    else:
        assert not scan.data_end and scan.stop
        assert report.lost_bytes == size - scan.readable_bytes
        assert scan.readable_bytes >= layout.chunks[whole - 1].end
        if whole < len(layout.chunks):
            assert scan.readable_bytes <= layout.chunks[whole].offset
    assert hashlib.sha256((src / "recording.mcap").read_bytes()).hexdigest() == before
    assert sorted(p.name for p in src.iterdir()) == ["recording.mcap"]  # input untouched


def test_cut_inside_a_chunk_reports_the_chunk_and_the_lost_bytes(
    recording: tuple[Path, list[Message]], layout: Layout, tmp_path: Path
) -> None:
    second = layout.chunks[1]
    size = second.offset + 100_000
    src = crashed_copy(tmp_path / "crashed", layout.data[:size])
    report = recover_bag(src, tmp_path / "saved")
    (scan,) = report.files
    assert scan.readable_bytes == second.offset and report.lost_bytes == 100_000
    assert f"chunk at byte {second.offset} is cut off" in scan.stop


@pytest.mark.parametrize("size", [5, len(MAGIC), 30], ids=["in magic", "after magic", "in header"])
def test_a_file_cut_before_any_chunk_has_no_readable_messages(
    recording: tuple[Path, list[Message]], layout: Layout, tmp_path: Path, size: int
) -> None:
    src = crashed_copy(tmp_path / "crashed", layout.data[:size])
    with pytest.raises(BagError, match="no readable messages"):
        recover_bag(src, tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["crashed"]  # no partial output left


def test_right_after_the_header_has_no_readable_messages(
    recording: tuple[Path, list[Message]], layout: Layout, tmp_path: Path
) -> None:
    src = crashed_copy(tmp_path / "c", layout.data[: layout.header_end])
    with pytest.raises(BagError, match="no readable messages.*without DataEnd"):
        recover_bag(src, tmp_path / "saved")


def test_a_zero_filled_tail_ends_the_readable_part(
    recording: tuple[Path, list[Message]], layout: Layout, tmp_path: Path
) -> None:
    """After a power loss a file may end in zeros that were allocated but never written."""
    third = layout.chunks[2].offset
    data = layout.data[:third] + bytes(4096)
    report = recover_bag(crashed_copy(tmp_path / "c", data), tmp_path / "saved")
    assert read_bag(tmp_path / "saved") == first_chunks(layout, recording[1], 2)
    assert report.files[0].readable_bytes == third and report.lost_bytes == 4096
    assert "reserved opcode 0" in report.files[0].stop


def rewrite(layout: Layout, chunk: Callable[[int, Record], bytes]) -> tuple[bytes, list[int]]:
    """The data section with every chunk record replaced by ``chunk(index, record)``.

    Returns the new file (ending after DataEnd, no summary) and the new chunk offsets.
    """
    out, offsets, index = bytearray(MAGIC), [], 0
    for rec in records(layout.data):
        if rec.opcode == CHUNK:
            offsets.append(len(out))
            out += chunk(index, rec)
            index += 1
        else:
            out += pack_record(rec.opcode, rec.body)
    return bytes(out), offsets


@pytest.mark.parametrize("compression", ["", "lz4", "zstd"])
def test_compressed_chunks_with_crcs_are_read(
    recording: tuple[Path, list[Message]], layout: Layout, tmp_path: Path, compression: str
) -> None:
    data, _ = rewrite(
        layout, lambda _, r: pack_record(CHUNK, pack_chunk(r.body, compression, None))
    )
    src = crashed_copy(tmp_path / "crashed", data)
    report = recover_bag(src, tmp_path / "saved")
    assert read_bag(tmp_path / "saved") == sorted(recording[1])
    assert report.files[0].data_end and report.lost_bytes == 0


def test_a_crc_mismatch_ends_the_readable_part(
    recording: tuple[Path, list[Message]], layout: Layout, tmp_path: Path
) -> None:
    def chunk(index: int, rec: Record) -> bytes:
        crc = 0xDEADBEEF if index == 2 else None
        return pack_record(CHUNK, pack_chunk(rec.body, "lz4", crc))

    data, offsets = rewrite(layout, chunk)
    src = crashed_copy(tmp_path / "crashed", data)
    report = recover_bag(src, tmp_path / "saved")
    assert read_bag(tmp_path / "saved") == first_chunks(layout, recording[1], 2)
    (scan,) = report.files
    assert scan.readable_bytes == offsets[2] and not scan.data_end
    assert "CRC" in scan.stop and report.lost_bytes == len(data) - offsets[2]


def _garbled_zstd(packed: bytes) -> bytes:
    return packed[:44] + bytes(8) + packed[52:]  # zeroes the zstd frame's magic number


def _wrong_size(packed: bytes) -> bytes:
    (size,) = struct.unpack_from("<Q", packed, 16)
    return packed[:16] + struct.pack("<Q", size + 1) + packed[24:]


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [(_garbled_zstd, "does not decompress"), (_wrong_size, "decompresses to")],
    ids=["garbled", "wrong size"],
)
def test_a_chunk_that_does_not_decompress_ends_the_readable_part(
    recording: tuple[Path, list[Message]],
    layout: Layout,
    tmp_path: Path,
    spoil: Callable[[bytes], bytes],
    problem: str,
) -> None:
    def chunk(index: int, rec: Record) -> bytes:
        packed = pack_chunk(rec.body, "zstd", 0)
        return pack_record(CHUNK, spoil(packed) if index == 1 else packed)

    data, offsets = rewrite(layout, chunk)
    report = recover_bag(crashed_copy(tmp_path / "c", data), tmp_path / "saved")
    assert read_bag(tmp_path / "saved") == first_chunks(layout, recording[1], 1)
    assert report.files[0].readable_bytes == offsets[1]
    assert problem in report.files[0].stop


def test_unchunked_records_and_unknown_opcodes_are_read(
    recording: tuple[Path, list[Message]], layout: Layout, tmp_path: Path
) -> None:
    """A writer without chunks puts Schema/Channel/Message at the top; unknown records skip."""

    def unchunk(_: int, rec: Record) -> bytes:
        inner = inner_records(chunk_parts(rec.body)[2])
        junk = pack_record(0x42, b"\x00" * 33) + pack_record(0x80, b"private")
        return junk + b"".join(pack_record(r.opcode, r.body) for r in inner)

    data, _ = rewrite(layout, unchunk)
    report = recover_bag(crashed_copy(tmp_path / "c", data), tmp_path / "saved")
    assert read_bag(tmp_path / "saved") == sorted(recording[1])
    assert report.files[0].data_end


def test_split_files_are_read_in_order_and_a_bare_file_works(
    recording: tuple[Path, list[Message]], layout: Layout, tmp_path: Path
) -> None:
    src = tmp_path / "split"
    src.mkdir()
    (src / "recording_10.mcap").write_bytes(layout.data[: layout.chunks[1].offset + 10])
    (src / "recording_9.mcap").write_bytes(layout.data)
    report = recover_bag(src, tmp_path / "saved")
    assert [f.path.name for f in report.files] == ["recording_9.mcap", "recording_10.mcap"]
    expected = sorted(recording[1] + first_chunks(layout, recording[1], 1))
    assert read_bag(tmp_path / "saved") == expected
    bare = recover_bag(src / "recording_10.mcap", tmp_path / "bare")
    assert read_bag(tmp_path / "bare") == first_chunks(layout, recording[1], 1)
    assert bare.lost_bytes == layout.chunks[1].offset + 10 - bare.files[0].readable_bytes


def test_bad_inputs_and_outputs_give_clear_errors(
    recording: tuple[Path, list[Message]], tmp_path: Path
) -> None:
    sqlite = tmp_path / "sqlite_bag"
    with BagWriter(sqlite, storage="sqlite3") as bag:
        bag.add_topic("/ids", IDS_LIST)
        bag.write("/ids", 5, msg_class(IDS_LIST)(header=make_header(5), ids=[]))
    with pytest.raises(BagError, match="sqlite3 bag, which survives a crash"):
        recover_bag(sqlite, tmp_path / "a")
    with pytest.raises(BagError, match="sqlite3"):
        recover_bag(next(sqlite.glob("*.db3")), tmp_path / "a")
    text = tmp_path / "notes.mcap"
    text.write_text("not a bag at all\n")
    with pytest.raises(BagError, match="not an mcap file"):
        recover_bag(text, tmp_path / "a")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(BagError, match="no .mcap file"):
        recover_bag(tmp_path / "empty_dir", tmp_path / "a")
    with pytest.raises(BagError, match="does not exist"):
        recover_bag(tmp_path / "missing", tmp_path / "a")
    src = recording[0]
    with pytest.raises(BagError, match="exists already"):
        recover_bag(src, sqlite)
    with pytest.raises(BagError, match="inside the input bag"):
        recover_bag(src, src / "saved")
    assert not (tmp_path / "a").exists() and not (src / "saved").exists()


@pytest.mark.parametrize("metadata", [True, False], ids=["with metadata", "without metadata"])
def test_bag_reader_points_to_recover_on_a_cut_bag(
    recording: tuple[Path, list[Message]], layout: Layout, tmp_path: Path, metadata: bool
) -> None:
    src = crashed_copy(tmp_path / "crashed", layout.data[: layout.chunks[2].end])
    if metadata:
        shutil.copy(recording[0] / "metadata.yaml", src)
    for path in (src, src / "recording.mcap"):
        with pytest.raises(BagError, match="footer.*`facealign recover"):
            BagReader(path).open()
    with BagReader(recording[0]) as bag:  # a complete bag opens as before
        assert bag.message_count == len(recording[1])


def test_cli_recover_json_text_and_errors(
    recording: tuple[Path, list[Message]],
    layout: Layout,
    tmp_path: Path,
    python_command: Callable[..., Any],
) -> None:
    size = layout.chunks[-1].offset + 1234
    src = crashed_copy(tmp_path / "crashed", layout.data[:size])
    cli = ("-m", "facealign_ros.cli", "recover")
    res = python_command(*cli, str(src), "-o", str(tmp_path / "saved"), "--json", timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    whole = len(layout.chunks) - 1
    expected = first_chunks(layout, recording[1], whole)
    assert out["messages"] == len(expected) and out["lost_bytes"] == 1234
    assert {t: v["messages"] for t, v in out["topics"].items()} == {
        t: sum(m[0] == t for m in expected) for t in TOPICS
    }
    assert out["files"][0]["stop"] and not out["files"][0]["complete"]
    assert read_bag(tmp_path / "saved") == expected
    text = python_command(*cli, str(src), "-o", str(tmp_path / "text"), timeout=120)
    assert text.returncode == 0, text.stderr
    assert f"recovered {len(expected)} messages" in text.stdout
    assert "/events" in text.stdout and "1234 bytes lost" in text.stdout
    again = python_command(*cli, str(src), "-o", str(tmp_path / "saved"), timeout=120)
    assert again.returncode == 2 and "exists already" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


PAIR_IDL = """module test_msgs {
  module msg {
    struct Pair {
      int32 a;
      string b;
    };
  };
};
"""


def test_ros2idl_definitions_are_carried_over(tmp_path: Path) -> None:
    """A type we do not know, defined by IDL in the recording, reads back from the new bag."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg
    from rosbags.typesys import get_typestore as rosbags_typestore

    from facealign_ros.bag.mcap_scan import McapSchema
    from facealign_ros.bag.recover import _bag_definition

    name = "test_msgs/msg/Pair"
    store = rosbags_typestore(Stores.EMPTY)
    store.register(get_types_from_msg("int32 a\nstring b", name))
    rihs01 = store.hash_rihs01(name)
    msgdef = f"{'=' * 80}\nIDL: {name}\n{PAIR_IDL}"
    with Writer(tmp_path / "idl", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/pair", name, msgdef=msgdef, rihs01=rihs01)
        for i in range(3):
            writer.write(conn, T0 + i, store.serialize_cdr(store.types[name](a=i, b=f"#{i}"), name))
    lay = layout_of(tmp_path / "idl" / "idl.mcap")
    src = crashed_copy(tmp_path / "crashed", lay.data[: lay.data_end.offset])
    recover_bag(src, tmp_path / "saved")
    with BagReader(tmp_path / "saved") as bag:
        got = [(stamp, msg.a, msg.b) for _, stamp, msg in bag.messages("/pair")]
    assert got == [(T0 + i, i, f"#{i}") for i in range(3)]
    bare = _bag_definition(McapSchema(1, name, "ros2idl", PAIR_IDL.encode()))
    assert bare.rihs01 == rihs01 and bare.msgdef.startswith("=" * 80 + "\nIDL: ")


def test_an_unusable_definition_falls_back_to_ours_or_is_reported() -> None:
    from facealign_ros.bag.mcap_scan import McapSchema
    from facealign_ros.bag.recover import _definition

    ours = get_typestore()
    known, note = _definition(McapSchema(1, EVENT_PACKET, "ros2msg", b"in t32 x y z\n"))
    assert known is not None and known.rihs01 == ours.hash_rihs01(EVENT_PACKET)
    assert "not usable" in note and "facealign's is used" in note
    unknown, note = _definition(McapSchema(2, "x_msgs/msg/Y", "jsonschema", b"{}"))
    assert unknown is None and "skipped" in note


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_a_chunk_inflating_past_its_declared_size_is_cut_there(
    recording: tuple[Path, list[Message]], layout: Layout, tmp_path: Path, compression: str
) -> None:
    """A decompression bomb: at most the declared size + 1 byte is ever inflated."""
    zeros = bytes(20 << 20)
    packed = {"lz4": lz4.frame.compress, "zstd": zstd.compress}[compression](zeros)
    name = compression.encode()

    def chunk(index: int, rec: Record) -> bytes:
        if index != 1:
            return pack_record(CHUNK, rec.body)
        head = struct.pack("<QQQI", 0, 0, 10, 0) + struct.pack("<I", len(name)) + name
        return pack_record(CHUNK, head + struct.pack("<Q", len(packed)) + packed)

    data, offsets = rewrite(layout, chunk)
    report = recover_bag(crashed_copy(tmp_path / "c", data), tmp_path / "saved")
    assert read_bag(tmp_path / "saved") == first_chunks(layout, recording[1], 1)
    assert report.files[0].readable_bytes == offsets[1]
    assert "decompresses to 11 bytes instead of 10" in report.files[0].stop
