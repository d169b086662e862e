r"""A streaming reader of MCAP records that survives files cut off by a killed recorder.

Written from the MCAP specification (https://mcap.dev/spec): the file is the magic
``\x89MCAP0\r\n``, then records of ``opcode (u8) | body length (u64 LE) | body``, then the
magic again. Integers are little-endian, strings are ``u32`` length + UTF-8 bytes. A recorder
that dies leaves the data section without ``DataEnd``, summary and footer, and often its last
record half written. :func:`scan_mcap` reads from the start, yields the Schema, Channel and
Message records of the data section (also those inside chunks), and stops cleanly at the first
record that is cut off, malformed, or (for a chunk) does not decompress or fails its CRC; its
:class:`ScanReport` says how far it got. It never reads the summary section, which only
repeats what the data section holds.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Union

import lz4.frame

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # pragma: no cover - depends on the interpreter
    from backports import zstd

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

__all__ = [
    "MAGIC",
    "McapChannel",
    "McapMessage",
    "McapRecord",
    "McapSchema",
    "Op",
    "ScanReport",
    "has_end_magic",
    "scan_mcap",
    "starts_like_mcap",
]

MAGIC = b"\x89MCAP0\r\n"
"""The 8 bytes an MCAP (major version 0) file starts and ends with."""
_HEAD = struct.Struct("<BQ")  # record opcode, body length in bytes
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time (ns), publish time (ns)


class Op(IntEnum):
    """MCAP record opcodes."""

    HEADER = 0x01
    FOOTER = 0x02
    SCHEMA = 0x03
    CHANNEL = 0x04
    MESSAGE = 0x05
    CHUNK = 0x06
    MESSAGE_INDEX = 0x07
    CHUNK_INDEX = 0x08
    ATTACHMENT = 0x09
    ATTACHMENT_INDEX = 0x0A
    STATISTICS = 0x0B
    METADATA = 0x0C
    METADATA_INDEX = 0x0D
    SUMMARY_OFFSET = 0x0E
    DATA_END = 0x0F


class McapSchema(NamedTuple):
    """A Schema record: ``name`` is the message type, ``data`` its definition (bytes)."""

    id: int
    name: str
    encoding: str
    data: bytes


class McapChannel(NamedTuple):
    """A Channel record; ``schema_id`` 0 means the channel has no schema."""

    id: int
    schema_id: int
    topic: str
    message_encoding: str
    metadata: dict[str, str]


class McapMessage(NamedTuple):
    """A Message record; times in ns, ``data`` the serialised message (a view, not a copy)."""

    channel_id: int
    sequence: int
    log_time: int
    publish_time: int
    data: memoryview


McapRecord = Union[McapSchema, McapChannel, McapMessage]  # noqa: UP007 - a runtime alias on 3.10


@dataclass
class ScanReport:
    """How far :func:`scan_mcap` could read one file.

    Attributes:
        path: The file.
        size_bytes: Its size.
        readable_bytes: Bytes from the file's start to the end of the last record read.
        data_end: Whether the data section ended properly (a DataEnd or Footer record).
        stop: Why reading stopped before the data section's end; ``""`` when ``data_end``.
    """

    path: Path
    size_bytes: int = 0
    readable_bytes: int = 0
    data_end: bool = False
    stop: str = ""

    @property
    def lost_bytes(self) -> int:
        """Bytes of the data section that could not be read (0 when it ended properly)."""
        return 0 if self.data_end else self.size_bytes - self.readable_bytes


class _MalformedError(Exception):
    """A record that cannot be parsed, decompressed or verified."""


class _Cursor:
    """Reads little-endian fields from one record body; raises ``_MalformedError`` past its end."""

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> memoryview:
        """The next ``n`` bytes."""
        end = self.pos + n
        if end > len(self.buf):
            raise _MalformedError(f"a field of {n} bytes runs past the record's end")
        view = self.buf[self.pos : end]
        self.pos = end
        return view

    def uint(self, size: int) -> int:
        """An unsigned integer of ``size`` bytes."""
        return int.from_bytes(self.take(size), "little")

    def string(self) -> str:
        """A ``u32``-length-prefixed UTF-8 string."""
        try:
            return str(self.take(self.uint(4)), "utf-8")
        except UnicodeDecodeError as err:
            raise _MalformedError(f"a string is not UTF-8: {err}") from err

    def blob(self, size: int) -> memoryview:
        """Bytes prefixed by their length as a ``size``-byte integer."""
        return self.take(self.uint(size))

    def string_map(self) -> dict[str, str]:
        """A ``u32``-byte-length-prefixed map of string keys to string values."""
        inner = _Cursor(self.blob(4))
        pairs: dict[str, str] = {}
        while inner.pos < len(inner.buf):
            key = inner.string()
            pairs[key] = inner.string()
        return pairs


def _schema(body: memoryview) -> McapSchema:
    cur = _Cursor(body)
    return McapSchema(cur.uint(2), cur.string(), cur.string(), bytes(cur.blob(4)))


def _channel(body: memoryview) -> McapChannel:
    cur = _Cursor(body)
    return McapChannel(cur.uint(2), cur.uint(2), cur.string(), cur.string(), cur.string_map())


def _message(body: memoryview) -> McapMessage:
    if len(body) < _MESSAGE_HEAD.size:
        raise _MalformedError(f"a message record of {len(body)} bytes is shorter than its header")
    channel_id, sequence, log_time, publish_time = _MESSAGE_HEAD.unpack_from(body)
    return McapMessage(channel_id, sequence, log_time, publish_time, body[_MESSAGE_HEAD.size :])


_PARSERS: dict[int, Callable[[memoryview], McapRecord]] = {
    Op.SCHEMA: _schema,
    Op.CHANNEL: _channel,
    Op.MESSAGE: _message,
}


MAX_CHUNK_BYTES = 1 << 30
"""Largest decompressed chunk read (rosbag2 writes chunks of about 1 MiB)."""


def _decompress(compression: str, packed: memoryview, size: int) -> bytes:
    """Decompress a chunk's records (``""``, ``"lz4"`` frame or ``"zstd"``).

    At most ``size + 1`` bytes come out (``size``: the chunk's declared uncompressed size, at
    most :data:`MAX_CHUNK_BYTES`), so a small hostile chunk cannot inflate to gigabytes.
    """
    if compression == "":
        return bytes(packed)
    if compression not in ("lz4", "zstd"):
        raise _MalformedError(f"uses an unknown compression {compression!r}")
    if size > MAX_CHUNK_BYTES:
        raise _MalformedError(f"declares {size} uncompressed bytes (over {MAX_CHUNK_BYTES})")
    try:
        if compression == "lz4":
            return lz4.frame.LZ4FrameDecompressor().decompress(packed, max_length=size + 1)
        return zstd.ZstdDecompressor().decompress(packed, max_length=size + 1)
    except Exception as err:  # each codec raises its own error type
        raise _MalformedError(f"does not decompress ({compression}: {err})") from err


def _records_in(buf: memoryview) -> list[McapRecord]:
    """Parse the records of a decompressed chunk, all or nothing."""
    records: list[McapRecord] = []
    pos = 0
    while pos < len(buf):
        if pos + _HEAD.size > len(buf):
            raise _MalformedError("ends inside a record header")
        opcode, length = _HEAD.unpack_from(buf, pos)
        if opcode == 0:
            raise _MalformedError(f"holds the reserved opcode 0 at its byte {pos}")
        start, pos = pos + _HEAD.size, pos + _HEAD.size + length
        if pos > len(buf):
            raise _MalformedError(f"holds a record of {length} bytes that runs past its end")
        if parser := _PARSERS.get(opcode):
            try:
                records.append(parser(buf[start:pos]))
            except _MalformedError as err:
                raise _MalformedError(f"holds a malformed {_name(opcode)} ({err})") from err
    return records


def _chunk(body: memoryview) -> list[McapRecord]:
    """Decompress a Chunk body, check its size and CRC (when non-zero), parse its records."""
    cur = _Cursor(body)
    cur.take(16)  # message start and end time (ns): not needed
    size, crc = cur.uint(8), cur.uint(4)
    compression = cur.string()
    records = _decompress(compression, cur.blob(8), size)
    if len(records) != size:
        raise _MalformedError(f"decompresses to {len(records)} bytes instead of {size}")
    if crc and zlib.crc32(records) != crc:
        raise _MalformedError(f"fails its CRC check ({zlib.crc32(records):#010x} != {crc:#010x})")
    return _records_in(memoryview(records))


def _parse(opcode: int, body: memoryview) -> list[McapRecord]:
    """The Schema/Channel/Message records of one top-level record (none for other kinds)."""
    if opcode == Op.CHUNK:
        return _chunk(body)
    parser = _PARSERS.get(opcode)
    return [parser(body)] if parser else []


def _name(opcode: int) -> str:
    """``"chunk"``, ``"message"``, ... or ``"record 0x42"`` for opcodes the spec does not name."""
    try:
        return Op(opcode).name.lower().replace("_", " ")
    except ValueError:
        return f"record {opcode:#04x}"


def starts_like_mcap(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) is the MCAP magic or, cut short, a prefix of it."""
    return head[: len(MAGIC)] == MAGIC[: len(head)]


def has_end_magic(path: str | os.PathLike[str]) -> bool:
    """Whether the file ends with the MCAP magic (a recorder that was killed does not write it)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 2 * len(MAGIC):
            return False
        f.seek(size - len(MAGIC))
        return f.read(len(MAGIC)) == MAGIC


def scan_mcap(
    path: str | os.PathLike[str], report: ScanReport | None = None
) -> Iterator[McapRecord]:
    """Yield the Schema, Channel and Message records of an MCAP file's data section, in order.

    Reading stops at DataEnd or Footer, or cleanly (no exception) at the first record that is
    cut off by the end of the file, is malformed, or is a chunk that does not decompress or
    fails its CRC; a chunk's records are yielded only when the whole chunk is good. Records of
    unknown or unneeded kinds are skipped by their length, without being read.

    Args:
        path: The ``.mcap`` file.
        report: Filled in while reading (size, readable bytes, why reading stopped).

    Returns:
        An iterator of :class:`McapSchema`, :class:`McapChannel` and :class:`McapMessage`;
        message data are views into their record or chunk (keeping one keeps its chunk).

    Raises:
        ValueError: (at the first ``next()``) If the file does not start with the MCAP magic.
    """
    report = report if report is not None else ScanReport(Path(path))
    with open(path, "rb") as f:
        report.size_bytes = size = os.fstat(f.fileno()).st_size
        head = f.read(len(MAGIC))
        if not starts_like_mcap(head):
            raise ValueError(f"{os.fspath(path)!r} is not an mcap file (no MCAP magic)")
        if len(head) < len(MAGIC):
            report.stop = "the file ends inside the MCAP magic"
            return
        report.readable_bytes = pos = len(MAGIC)
        while not report.stop:
            opcode, end = yield from _next_record(f, pos, size, report)
            if opcode in (Op.DATA_END, Op.FOOTER):
                report.readable_bytes, report.data_end = end, True
                return
            pos = report.readable_bytes = end


def _next_record(
    f: BinaryIO, pos: int, size: int, report: ScanReport
) -> Generator[McapRecord, None, tuple[int, int]]:
    """Read the record at byte ``pos`` of ``f`` (``size`` bytes) and yield its parsed records.

    Returns ``(opcode, end offset)``; sets ``report.stop`` instead when the record is cut off
    or bad (the opcode is then 0).
    """
    if pos == size:
        report.stop = f"the file ends after byte {pos} without DataEnd or footer"
        return 0, pos
    if pos + _HEAD.size > size:
        report.stop = f"the file ends inside the record header at byte {pos}"
        return 0, pos
    opcode, length = _HEAD.unpack(f.read(_HEAD.size))
    if opcode == 0:  # reserved: typically the zero-filled tail of a file never written
        report.stop = f"the record at byte {pos} has the reserved opcode 0 (unwritten space?)"
        return 0, pos
    end = pos + _HEAD.size + length
    if end > size:
        report.stop = (
            f"the {_name(opcode)} at byte {pos} is cut off "
            f"({size - pos} of its {end - pos} bytes are in the file)"
        )
        return 0, pos
    if opcode != Op.CHUNK and opcode not in _PARSERS:
        f.seek(end)
        return opcode, end
    try:
        records = _parse(opcode, memoryview(f.read(length)))
    except _MalformedError as err:
        problem = str(err) if opcode == Op.CHUNK else f"is malformed ({err})"
        report.stop = f"the {_name(opcode)} at byte {pos} {problem}"
        return 0, pos
    report.readable_bytes = end
    yield from records
    return opcode, end
