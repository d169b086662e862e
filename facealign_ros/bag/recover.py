"""``facealign recover``: a complete rosbag2 from the messages of a crashed mcap recording.

A recorder that is killed (crash, power loss, ``kill -9``) leaves its mcap file without summary
and footer, and the last chunk often half written; rosbags, and so :class:`~.io.BagReader`,
refuse such a file. :func:`recover_bag` reads every mcap file of the bag with
:func:`~.mcap_scan.scan_mcap` as far as it is intact and writes each message it finds, with
its topic, type, log time and raw CDR bytes, into a new bag (atomically, like
:class:`~.writer.BagWriter`), keeping the recording's own message definitions and QoS profiles.

Example:
    >>> report = recover_bag("crashed_bag", "recovered_bag")  # doctest: +SKIP
    >>> report.topics, report.lost_bytes  # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from rosbags.rosbag2.metadata import parse_qos
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg
from rosbags.typesys import get_typestore as rosbags_typestore

from .io import BagError, TopicSummary, within
from .mcap_scan import McapChannel, McapMessage, McapSchema, ScanReport, scan_mcap, starts_like_mcap
from .typestore import get_typestore
from .writer import BagWriter

if TYPE_CHECKING:
    import os

    from rosbags.interfaces import Qos

__all__ = ["RecoverReport", "mcap_files", "recover_bag"]

_IDL_SEP = "=" * 80 + "\n"  # separates the definitions of a ros2idl schema ("IDL: pkg/msg/T")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_PROBLEM = (
    "is a sqlite3 bag, which survives a crash as it is: read it directly "
    "(`facealign recover` is for mcap bags)"
)


def _error(path: Path, problem: str) -> BagError:
    """A :class:`BagError` naming ``path``."""
    return BagError(f"bag {str(path)!r}: {problem}")


@dataclass(frozen=True)
class RecoverReport:
    """What :func:`recover_bag` saved.

    Attributes:
        output: The new bag directory.
        topics: Topic -> (message type, messages recovered), sorted by topic.
        files: How far each input mcap file could be read, in recording order.
        skipped_messages: Messages read but not written because their channel or type
            definition was not usable (``notes`` says which).
        notes: Problems worth a look, one sentence each.
    """

    output: Path
    topics: dict[str, TopicSummary]
    files: tuple[ScanReport, ...]
    skipped_messages: int = 0
    notes: tuple[str, ...] = ()

    @property
    def messages(self) -> int:
        """Messages written to the new bag."""
        return sum(summary.count for summary in self.topics.values())

    @property
    def lost_bytes(self) -> int:
        """Bytes at the ends of the input files that could not be read (cut-off records)."""
        return sum(report.lost_bytes for report in self.files)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "output": str(self.output),
            "messages": self.messages,
            "topics": {t: {"type": s.msgtype, "messages": s.count} for t, s in self.topics.items()},
            "lost_bytes": self.lost_bytes,
            "skipped_messages": self.skipped_messages,
            "files": [
                {
                    "path": str(r.path),
                    "size_bytes": r.size_bytes,
                    "readable_bytes": r.readable_bytes,
                    "lost_bytes": r.lost_bytes,
                    "complete": r.data_end,
                    "stop": r.stop,
                }
                for r in self.files
            ],
            "notes": list(self.notes),
        }


def _split_order(path: Path) -> list[Any]:
    """Sort key putting ``bag_2.mcap`` before ``bag_10.mcap`` (rosbag2's split files)."""
    parts = re.split(r"(\d+)", path.name)
    return [int(part) if i % 2 else part for i, part in enumerate(parts)]


def _why_no_mcap(directory: Path) -> str:
    """Why a directory without ``.mcap`` files cannot be recovered."""
    if any(directory.glob("*.db3")):
        return _SQLITE_PROBLEM
    if any(directory.glob("*.mcap.zstd")):
        return "its mcap files are zstd-compressed as a whole: `zstd -d` them first"
    return "holds no .mcap file"


def mcap_files(path: str | os.PathLike[str]) -> list[Path]:
    """The mcap files of a bag, in recording order.

    Args:
        path: A rosbag2 directory (``metadata.yaml`` may be missing) or one ``.mcap`` file.

    Returns:
        ``[path]`` for a file; the directory's ``*.mcap`` files, split index order.

    Raises:
        BagError: If the path is missing, holds no mcap file, or a file is not mcap (a
            sqlite3 bag is named as such).
    """
    path = Path(path)
    if not path.exists():
        raise _error(path, "does not exist")
    files = [path] if path.is_file() else sorted(path.glob("*.mcap"), key=_split_order)
    if not files:
        raise _error(path, _why_no_mcap(path))
    for file in files:
        try:
            with open(file, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except OSError as err:
            raise _error(file, f"cannot be read ({err.strerror or err})") from err
        if head.startswith(_SQLITE_MAGIC):
            raise _error(file, _SQLITE_PROBLEM)
        if not starts_like_mcap(head):
            raise _error(file, "is not an mcap file (it does not start with the MCAP magic)")
    return files


class _Definition(NamedTuple):
    """A message definition as rosbag2 stores it, and its RIHS01 type hash."""

    msgdef: str
    rihs01: str


def _bag_definition(schema: McapSchema) -> _Definition:
    """The schema's own definition (``ros2msg`` or ``ros2idl``) and the hash rosbags checks."""
    text = schema.data.decode("utf-8")
    if schema.encoding == "ros2msg":
        types = get_types_from_msg(text, schema.name)
    elif schema.encoding == "ros2idl":
        if not text.startswith(f"{_IDL_SEP}IDL: "):  # rosbags tells the formats apart by this
            text = f"{_IDL_SEP}IDL: {schema.name}\n{text}"
        types = {}
        for part in text.split(_IDL_SEP)[1:]:
            types.update(get_types_from_idl(part.split("\n", 1)[1]))
    else:
        raise ValueError(f"unsupported schema encoding {schema.encoding!r}")
    store = rosbags_typestore(Stores.EMPTY)
    store.register(types)
    return _Definition(text, store.hash_rihs01(schema.name))


def _definition(schema: McapSchema) -> tuple[_Definition | None, str]:
    """The recording's definition, else ours for a type we know; and a note when not its own."""
    try:
        return _bag_definition(schema), ""
    except Exception as err:  # rosbags' parsers raise several types
        problem = f"the recording's definition of {schema.name} is not usable ({err})"
    ours = get_typestore()
    if schema.name not in ours.fielddefs:
        return None, f"{problem}; its messages are skipped"
    msgdef, _ = ours.generate_msgdef(schema.name, ros_version=2)
    return _Definition(msgdef, ours.hash_rihs01(schema.name)), f"{problem}; facealign's is used"


def _qos(metadata: dict[str, str]) -> list[Qos]:
    """The channel's offered QoS profiles; none when they are missing or do not parse."""
    try:
        return parse_qos(metadata.get("offered_qos_profiles", ""))
    except Exception:  # a profile we cannot read must not cost the messages
        return []


class _RawBagWriter(BagWriter):
    """A :class:`BagWriter` taking serialised messages and the recording's definitions."""

    def add_raw_topic(
        self, topic: str, msgtype: str, definition: _Definition, channel: McapChannel
    ) -> None:
        """Declare ``topic`` with the recording's definition, encoding and QoS."""
        writer = self._open_writer()
        try:
            self._connections[topic] = writer.add_connection(
                topic,
                msgtype,
                msgdef=definition.msgdef,
                rihs01=definition.rihs01,
                serialization_format=channel.message_encoding or "cdr",
                offered_qos_profiles=_qos(channel.metadata),
            )
        except Exception as err:
            raise self._error(f"cannot add topic {topic!r} ({msgtype}): {err}") from err

    def write_raw(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        """Write one serialised message of a declared topic with log time ``timestamp_ns``."""
        self._open_writer().write(self._connections[topic], timestamp_ns, data)


class _Copier:
    """Copies the messages of scanned mcap files into a :class:`_RawBagWriter`."""

    def __init__(self, writer: _RawBagWriter) -> None:
        self.writer = writer
        self.topics: dict[str, TopicSummary] = {}
        self.skipped = 0
        self.notes: list[str] = []

    def copy_file(self, report: ScanReport) -> None:
        """Copy the readable messages of ``report.path``; fills in ``report``."""
        schemas: dict[int, McapSchema] = {}
        channels: dict[int, str | None] = {}  # channel id -> output topic (None: not copied)
        for record in scan_mcap(report.path, report):
            if isinstance(record, McapMessage):
                self._write(channels.get(record.channel_id), record)
            elif isinstance(record, McapSchema):
                schemas[record.id] = record
            elif record.id not in channels:
                channels[record.id] = self._add_channel(record, schemas.get(record.schema_id))

    def _write(self, topic: str | None, message: McapMessage) -> None:
        """Write one message, or count it as skipped when its channel is not copied."""
        if topic is None:
            self.skipped += 1
            return
        self.writer.write_raw(topic, message.log_time, message.data)
        msgtype, count = self.topics[topic]
        self.topics[topic] = TopicSummary(msgtype, count + 1)

    def _add_channel(self, channel: McapChannel, schema: McapSchema | None) -> str | None:
        """Declare the channel's topic in the output; return it, or None if not copied."""
        topic = channel.topic
        if schema is None:
            self.notes.append(f"topic {topic!r} has no schema; its messages are skipped")
            return None
        if topic in self.topics:
            if self.topics[topic].msgtype == schema.name:
                return topic  # the same topic in a later split file
            have = self.topics[topic].msgtype
            self.notes.append(f"topic {topic!r} is {have}, also {schema.name}: those skipped")
            return None
        definition, note = _definition(schema)
        if note:
            self.notes.append(f"topic {topic!r}: {note}")
        if definition is None:
            return None
        self.writer.add_raw_topic(topic, schema.name, definition, channel)
        self.topics[topic] = TopicSummary(schema.name, 0)
        return topic


def _check_output(src: Path, dst: Path) -> None:
    """Refuse an output path inside the input bag (or equal to it)."""
    if within(dst, src):
        raise _error(dst, f"is inside the input bag {str(src)!r}; write the new bag elsewhere")


def recover_bag(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> RecoverReport:
    """Write every readable message of an mcap bag, e.g. a crashed recording, into a new bag.

    The input is only read. Messages keep their topic, type, log time (ns) and CDR bytes;
    the publish time and sequence number of the mcap records are not kept. Each input file
    is read up to its first cut-off or corrupt record (see :func:`~.mcap_scan.scan_mcap`).

    Args:
        src: A rosbag2 mcap directory (with or without ``metadata.yaml``) or one ``.mcap``.
        dst: The new bag directory; must not exist nor lie inside ``src``.

    Returns:
        What was saved and what was lost.

    Raises:
        BagError: If ``src`` is not an mcap bag, ``dst`` exists or lies inside ``src``, no
            message can be read, or writing fails (nothing is left at ``dst`` then).
    """
    src, dst = Path(src), Path(dst)
    reports = tuple(ScanReport(path) for path in mcap_files(src))
    _check_output(src, dst)
    try:
        with _RawBagWriter(dst) as writer:
            copier = _Copier(writer)
            for report in reports:
                copier.copy_file(report)
            if not any(summary.count for summary in copier.topics.values()):
                stops = "; ".join(f"{r.path.name}: {r.stop or 'complete'}" for r in reports)
                skipped = f"; {copier.skipped} skipped: {copier.notes}" if copier.skipped else ""
                raise _error(src, f"no readable messages ({stops}){skipped}")
    except OSError as err:
        raise _error(src, f"cannot recover into {str(dst)!r}: {err}") from err
    topics = dict(sorted(copier.topics.items()))
    return RecoverReport(dst, topics, reports, copier.skipped, tuple(copier.notes))
