"""Writing rosbag2 recordings (mcap or sqlite3) without ROS, via rosbags.

:class:`BagWriter` writes CDR messages and stores their definitions in the bag (so any rosbag2
reader can decode them), and only ever leaves a complete bag behind: it writes into a temporary
sibling directory and renames it into place on a successful close.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rosbags.rosbag2 import StoragePlugin, Writer

from .io import BagError
from .typestore import get_typestore, normalize_typename

if TYPE_CHECKING:
    import os
    from types import TracebackType

    from rosbags.interfaces import Connection

__all__ = ["BagWriter", "Storage"]

Storage = Literal["mcap", "sqlite3"]
"""rosbag2 storage plugin names accepted by :class:`BagWriter`."""
_STORAGES: dict[str, StoragePlugin] = {
    "mcap": StoragePlugin.MCAP,
    "sqlite3": StoragePlugin.SQLITE3,
}
_BAG_VERSION: Literal[9] = 9


class BagWriter:
    """Write a rosbag2 bag atomically: the bag appears at ``path`` only after a clean close.

    Messages are written to ``<parent>/.<name>.<random>.partial/<name>``; :meth:`close`
    renames that bag to ``path``. An exception inside the ``with`` block (or a failed close)
    deletes the partial bag. The definitions of all written types are stored in the bag.

    Args:
        path: Output bag directory; must not exist. Missing parent directories are created.
        storage: ``"mcap"`` (default) or ``"sqlite3"``.

    Raises:
        BagError: If ``path`` exists already.
        ValueError: If ``storage`` is unknown.
    """

    def __init__(self, path: str | os.PathLike[str], storage: Storage = "mcap") -> None:
        """Check the arguments; the bag is opened by :meth:`open` or ``with``."""
        if storage not in _STORAGES:
            msg = f"unknown storage {storage!r}; expected one of {sorted(_STORAGES)}"
            raise ValueError(msg)
        self.path = Path(path)
        self.storage: Storage = storage
        self._check_free()
        self._tmpdir: Path | None = None
        self._writer: Writer | None = None
        self._connections: dict[str, Connection] = {}

    def _error(self, problem: str) -> BagError:
        """Return a :class:`BagError` naming this bag."""
        return BagError(f"bag {str(self.path)!r}: {problem}")

    def _check_free(self) -> None:
        """Raise if the output path exists."""
        if self.path.exists() or self.path.is_symlink():
            raise self._error("output path exists already; refusing to overwrite it")

    def open(self) -> None:
        """Create the temporary bag.

        Raises:
            BagError: If the output path exists or the temporary bag cannot be created.
            RuntimeError: If the writer was opened before.
        """
        if self._tmpdir is not None:
            msg = f"bag writer for {str(self.path)!r} was already opened"
            raise RuntimeError(msg)
        self._check_free()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmpdir = Path(
                tempfile.mkdtemp(
                    prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent
                )
            )
        except OSError as err:
            raise self._error(f"cannot create the output bag: {err}") from err
        self._tmpdir = tmpdir
        try:
            writer = Writer(
                tmpdir / self.path.name,
                version=_BAG_VERSION,
                storage_plugin=_STORAGES[self.storage],
            )
            writer.open()
        except Exception as err:
            self._discard()
            raise self._error(f"cannot create the output bag: {err}") from err
        self._writer = writer

    def _open_writer(self) -> Writer:
        """Return the open rosbags writer or raise."""
        if self._writer is None:
            msg = f"bag writer for {str(self.path)!r} is not open; use `with BagWriter(path):`"
            raise RuntimeError(msg)
        return self._writer

    @property
    def topics(self) -> dict[str, str]:
        """Topic name -> message type of the topics added so far."""
        return {topic: conn.msgtype for topic, conn in self._connections.items()}

    def add_topic(self, topic: str, typename: str) -> None:
        """Declare a topic and its message type before writing to it.

        Args:
            topic: Topic name, e.g. ``"/humans/faces/tracked"``.
            typename: ``"pkg/msg/Name"`` or ``"pkg/Name"``; must be known to the typestore.

        Raises:
            BagError: If the topic was added before or the type is unknown.
            ValueError: If ``typename`` is malformed.
        """
        writer = self._open_writer()
        msgtype = normalize_typename(typename)
        if topic in self._connections:
            have = self._connections[topic].msgtype
            raise self._error(f"topic {topic!r} was already added (type {have})")
        store = get_typestore()
        if msgtype not in store.fielddefs:
            raise self._error(f"unknown message type {msgtype!r} for topic {topic!r}")
        self._connections[topic] = writer.add_connection(topic, msgtype, typestore=store)

    def write(self, topic: str, timestamp_ns: int, msg: Any) -> None:
        """Serialise ``msg`` (CDR) and write it with receive time ``timestamp_ns``.

        Args:
            topic: A topic declared with :meth:`add_topic`.
            timestamp_ns: Receive (log) time in nanoseconds, ``>= 0``.
            msg: A message of the topic's type (a rosbags dataclass, or any object with the
                same fields).

        Raises:
            BagError: If the topic is unknown, the timestamp negative, the message of another
                type, or it cannot be serialised (e.g. a fixed-size array of wrong length).
        """
        writer = self._open_writer()
        conn = self._connections.get(topic)
        if conn is None:
            raise self._error(f"topic {topic!r} was not added; call add_topic() first")
        if int(timestamp_ns) < 0:
            raise self._error(f"negative timestamp {timestamp_ns} on {topic!r}")
        msgtype = getattr(msg, "__msgtype__", conn.msgtype)
        if msgtype != conn.msgtype:
            raise self._error(f"topic {topic!r} has type {conn.msgtype}, got a {msgtype}")
        try:
            data = get_typestore().serialize_cdr(msg, conn.msgtype)
        except Exception as err:
            problem = f"cannot serialise {conn.msgtype} for {topic!r}: {err}"
            raise self._error(problem) from err
        writer.write(conn, int(timestamp_ns), data)

    def close(self) -> None:
        """Finish the bag and move it to the output path.

        Raises:
            BagError: If finishing fails or the output path appeared meanwhile; the partial
                bag is removed.
        """
        writer = self._open_writer()
        self._writer = None
        assert self._tmpdir is not None
        try:
            writer.close()
            self._check_free()
            (self._tmpdir / self.path.name).rename(self.path)
        except BagError:
            raise
        except Exception as err:
            with suppress(Exception):
                writer.abort()
            raise self._error(f"cannot finish the bag: {err}") from err
        finally:
            self._discard()

    def abort(self) -> None:
        """Drop the bag: close the storage and delete everything written so far."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                with suppress(Exception):
                    writer.abort()
        finally:
            self._discard()

    def _discard(self) -> None:
        """Remove the temporary directory (and the partial bag in it), if any."""
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> BagWriter:
        """Open the bag."""
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """Close the bag, or abort it when the block raised."""
        if exc_type is None:
            self.close()
        else:
            self.abort()
