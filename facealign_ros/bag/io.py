"""Reading rosbag2 recordings (mcap or sqlite3) without ROS, via rosbags.

:class:`BagReader` streams deserialised messages of several topics in time order; it uses the
type definitions stored in the bag and falls back to :func:`~.typestore.get_typestore` for
types the bag does not define. Writing: :mod:`.writer`.

Example:
    >>> with BagReader(path) as bag:  # doctest: +SKIP
    ...     for topic, stamp_ns, msg in bag.messages(["/events", "/image"]):
    ...         ...
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Nodetype

from .mcap_scan import has_end_magic
from .typestore import get_typestore

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Iterator
    from types import TracebackType

    from rosbags.interfaces import Connection
    from rosbags.interfaces.typing import Typesdict
    from rosbags.typesys.store import Typestore

__all__ = ["BagError", "BagReader", "TopicSummary", "within"]


class BagError(ValueError):
    """A bag cannot be read or written; the message names the path and the problem."""


class TopicSummary(NamedTuple):
    """Type and message count of one topic in a bag."""

    msgtype: str
    count: int


def within(path: str | os.PathLike[str], bag: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``bag`` or lies inside it (both resolved, symlinks followed).

    Commands that read a bag and write another refuse an output for which this holds: the
    input is only read. A bag given as its storage file (``x/x.mcap``, ``x/x_0.db3``) counts as
    its folder when that folder is a bag (it holds ``metadata.yaml``).
    """
    p, b = Path(path).resolve(), Path(bag).resolve()
    if b.is_file() and (b.parent / "metadata.yaml").is_file():
        b = b.parent
    return p == b or b in p.parents


def _recover_hint(path: Path) -> str:
    """A pointer to ``facealign recover`` when ``path`` holds mcap files a recorder left unfinished.

    That is an mcap file without its end magic, or a bag directory without ``metadata.yaml``
    (``ros2 bag record`` writes it on a clean exit only); ``""`` otherwise.
    """
    files = [path] if path.is_file() else sorted(path.glob("*.mcap"))
    try:
        cut = [f.name for f in files if f.suffix == ".mcap" and not has_end_magic(f)]
    except OSError:
        return ""
    if cut:
        why = f"{cut[0]} ends without its footer (was the recorder killed?)"
    elif path.is_dir() and files and not (path / "metadata.yaml").exists():
        why = "the recorder did not finish the bag"
    else:
        return ""
    return f"; {why}: `facealign recover {path} -o NEW_BAG` saves its messages into a new bag"


def _type_closure(fielddefs: Typesdict, roots: Iterable[str]) -> list[str]:
    """Return ``roots`` and every type they reference, as known by ``fielddefs``."""
    seen: list[str] = []
    stack = [name for name in roots if name in fielddefs]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.append(name)
        for _, desc in fielddefs[name][1]:
            kind, arg = desc[1][0] if desc[0] in (Nodetype.ARRAY, Nodetype.SEQUENCE) else desc
            if kind == Nodetype.NAME and arg in fielddefs and arg not in seen:
                stack.append(arg)
    return seen


class BagReader:
    """Read a rosbag2 bag (directory with ``metadata.yaml``, or a bare ``.mcap``/``.db3``).

    Use as a context manager; messages are read lazily, one storage chunk at a time.

    Args:
        path: Bag directory or storage file.

    Raises:
        BagError: On entering, if the path is missing, is not a rosbag2 bag, or its metadata
            is corrupt or truncated.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Store the path; the bag is opened by :meth:`open` or ``with``."""
        self.path = Path(path)
        self._reader: AnyReader | None = None
        self._undefined: set[str] = set()

    def _error(self, problem: str) -> BagError:
        """Return a :class:`BagError` naming this bag."""
        return BagError(f"bag {str(self.path)!r}: {problem}")

    def open(self) -> None:
        """Open the bag and load its type definitions.

        Raises:
            BagError: If the bag cannot be opened (see the class docstring).
            RuntimeError: If it is already open.
        """
        if self._reader is not None:
            msg = f"bag {str(self.path)!r} is already open"
            raise RuntimeError(msg)
        if not self.path.exists():
            raise self._error("does not exist")
        if self.path.suffix == ".bag":
            raise self._error("ROS 1 bags are not supported; convert it with `rosbags-convert`")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            problem = "not a rosbag2 bag (directory without metadata.yaml)"
            raise self._error(problem + _recover_hint(self.path))
        try:
            reader = AnyReader([self.path], default_typestore=get_typestore())
            reader.open()
        except Exception as err:  # rosbags raises many types for corrupt input
            raise self._error(f"cannot open: {err}{_recover_hint(self.path)}") from err
        try:
            self._undefined = self._complete_types(reader)
        except Exception as err:
            reader.close()
            raise self._error(f"cannot load message definitions: {err}") from err
        self._reader = reader

    @staticmethod
    def _complete_types(reader: AnyReader) -> set[str]:
        """Add our definitions for types the bag does not define; return still-unknown types."""
        store = reader.typestore
        needed = {conn.msgtype for conn in reader.connections}
        missing = needed - store.fielddefs.keys()
        ours = get_typestore().fielddefs
        add = {
            name: ours[name] for name in _type_closure(ours, missing) if name not in store.fielddefs
        }
        if add:
            store.register(add)
        return needed - store.fielddefs.keys()

    def close(self) -> None:
        """Close the bag; closing a closed reader does nothing."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def __enter__(self) -> BagReader:
        """Open the bag."""
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """Close the bag."""
        self.close()

    def _open_reader(self) -> AnyReader:
        """Return the open AnyReader or raise."""
        if self._reader is None:
            msg = f"bag {str(self.path)!r} is not open; use `with BagReader(path) as bag:`"
            raise RuntimeError(msg)
        return self._reader

    @property
    def typestore(self) -> Typestore:
        """The typestore used to deserialise this bag (its own definitions plus ours)."""
        return self._open_reader().typestore

    @property
    def topics(self) -> dict[str, TopicSummary]:
        """Topic name -> (message type, message count), sorted by name."""
        reader = self._open_reader()
        summary: dict[str, TopicSummary] = {}
        for name, info in reader.topics.items():
            msgtype = info.msgtype or "|".join(sorted({c.msgtype for c in info.connections}))
            summary[name] = TopicSummary(msgtype, info.msgcount)
        return summary

    @property
    def message_count(self) -> int:
        """Number of messages in the bag."""
        return self._open_reader().message_count

    @property
    def start_ns(self) -> int:
        """Timestamp of the earliest message (ns); ``2**63 - 1`` for an empty bag."""
        return self._open_reader().start_time

    @property
    def end_ns(self) -> int:
        """One nanosecond after the latest message; 0 for an empty bag."""
        return self._open_reader().end_time

    def messages(
        self,
        topics: str | Iterable[str] | None = None,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> Iterator[tuple[str, int, Any]]:
        """Iterate over messages in receive-time order, across topics, lazily.

        Topics are checked when this method is called, not at the first ``next()``.

        Args:
            topics: A topic name or names to read; ``None`` reads every topic.
            start_ns: Only messages with timestamp ``>= start_ns``.
            stop_ns: Only messages with timestamp ``< stop_ns``.

        Returns:
            An iterator of ``(topic, timestamp_ns, message)``; ``uint8[]`` fields come back as
            read-only numpy arrays.

        Raises:
            BagError: If a requested topic is not in the bag or its type has no definition,
                or (while iterating) a message cannot be decoded.
            RuntimeError: If the reader is not open.
        """
        reader = self._open_reader()
        wanted = [topics] if isinstance(topics, str) else None if topics is None else list(topics)
        available = {conn.topic for conn in reader.connections}
        if wanted is not None:
            if unknown := sorted(set(wanted) - available):
                raise self._error(f"unknown topic(s) {unknown}; the bag has {sorted(available)}")
            conns = [conn for conn in reader.connections if conn.topic in set(wanted)]
        else:
            conns = list(reader.connections)
        if undefined := sorted({c.msgtype for c in conns} & self._undefined):
            raise self._error(f"no message definition for type(s) {undefined}")
        if not conns:
            return iter(())
        return self._iterate(reader, conns, start_ns, stop_ns)

    def _iterate(
        self,
        reader: AnyReader,
        conns: list[Connection],
        start_ns: int | None,
        stop_ns: int | None,
    ) -> Iterator[tuple[str, int, Any]]:
        """Yield deserialised messages (see :meth:`messages`)."""
        store = reader.typestore
        try:
            for conn, stamp, raw in reader.messages(conns, start=start_ns, stop=stop_ns):
                try:
                    msg = store.deserialize_cdr(raw, conn.msgtype)
                except Exception as err:
                    problem = f"cannot decode {conn.msgtype} on {conn.topic} at {stamp} ns: {err}"
                    raise self._error(problem) from err
                yield conn.topic, stamp, msg
        except BagError:
            raise
        except Exception as err:  # storage-level corruption surfaces while reading
            raise self._error(f"cannot read messages: {err}") from err
