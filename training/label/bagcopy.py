"""Copy a bag's messages unchanged: raw CDR bytes, log times, types, definitions and QoS.

:class:`RawBagReader` and :class:`CopyBagWriter` extend the package's
:class:`~facealign_ros.bag.BagReader` and :class:`~facealign_ros.bag.BagWriter` (same errors
naming the bag, same atomic output) with raw access, so that ``facealign label`` can carry
every recorded message over byte for byte, including types this package does not know.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rosbags.interfaces import Connection, ConnectionExtRosbag2

from facealign_ros.bag import BagError, BagReader, BagWriter, Storage


def storage_of(path: str | Path) -> Storage:
    """The storage plugin of a bag directory or file: ``"sqlite3"`` for .db3, else ``"mcap"``."""
    p = Path(path)
    if p.is_dir():
        return "sqlite3" if any(p.glob("*.db3")) else "mcap"
    return "sqlite3" if p.suffix == ".db3" else "mcap"


class RawBagReader(BagReader):
    """A :class:`BagReader` that also yields undecoded messages with their connections."""

    @property
    def connections(self) -> list[Connection]:
        """All connections (topic, type, definition, QoS) of the bag."""
        return list(self._open_reader().connections)

    def raw_messages(self) -> Iterator[tuple[Connection, int, bytes]]:
        """Every message in log-time order as ``(connection, log time ns, CDR bytes)``.

        Raises:
            BagError: (while iterating) if the storage is corrupt or truncated.
        """
        reader = self._open_reader()
        try:
            for conn, stamp, raw in reader.messages(reader.connections):
                yield conn, int(stamp), bytes(raw)
        except Exception as err:  # storage-level corruption surfaces while reading
            raise self._error(f"cannot read messages: {err}") from err

    def decode(self, conn: Connection, raw: bytes) -> Any:
        """Deserialise one raw message of ``conn``.

        Raises:
            BagError: if it cannot be decoded (the message names the topic).
        """
        try:
            return self.typestore.deserialize_cdr(raw, conn.msgtype)
        except Exception as err:
            raise self._error(f"cannot decode {conn.msgtype} on {conn.topic}: {err}") from err


class CopyBagWriter(BagWriter):
    """A :class:`BagWriter` that can also add connections copied from another bag."""

    def add_copy(self, conn: Connection, typestore: Any) -> None:
        """Add a connection like ``conn`` (same topic, type, definition, hash and QoS).

        A second connection of the same topic and type (another publisher) shares the first.

        Args:
            conn: a connection of the input bag.
            typestore: the input bag's typestore, for connections stored without a definition.

        Raises:
            BagError: if the topic was added with another type or cannot be added.
        """
        writer = self._open_writer()
        if conn.topic in self._connections:
            if self._connections[conn.topic].msgtype == conn.msgtype:
                return
            raise self._error(f"topic {conn.topic!r} is recorded with two types; cannot copy it")
        msgdef = conn.msgdef.data if conn.msgdef is not None else ""
        digest = conn.digest if str(conn.digest).startswith("RIHS01_") else ""
        ext = conn.ext if isinstance(conn.ext, ConnectionExtRosbag2) else None
        try:
            if not msgdef or not digest:
                msgdef, _ = typestore.generate_msgdef(conn.msgtype, ros_version=2)
                digest = typestore.hash_rihs01(conn.msgtype)
            self._connections[conn.topic] = writer.add_connection(
                conn.topic, conn.msgtype, msgdef=msgdef, rihs01=digest,
                serialization_format=ext.serialization_format if ext else "cdr",
                offered_qos_profiles=ext.offered_qos_profiles if ext else (),
            )  # fmt: skip
        except Exception as err:
            raise self._error(f"cannot copy topic {conn.topic!r} ({conn.msgtype}): {err}") from err

    def write_raw(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        """Write already-serialised bytes on a topic added before.

        Raises:
            BagError: if the topic is unknown.
        """
        conn = self._connections.get(topic)
        if conn is None:
            raise self._error(f"topic {topic!r} was not added")
        self._open_writer().write(conn, int(timestamp_ns), data)


__all__ = ["BagError", "CopyBagWriter", "RawBagReader", "storage_of"]
