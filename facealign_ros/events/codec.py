"""The front door of the event codecs: a stateful :class:`Decoder` and :func:`encode`.

Supported encodings (as in ``event_camera_msgs/EventPacket.encoding``): ``evt3``, ``libcaer``,
``libcaer_cmp``, ``mono``, ``trigger``. Encoders exist for ``evt3`` and ``mono``.
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np

from facealign_ros.events import evt3, evt3_encode, libcaer_cmp, mono
from facealign_ros.events.types import (
    EVENT_DTYPE,
    TRIGGER_DTYPE,
    DecodeError,
    DecodeStats,
    concat_structured,
)

DECODE_ENCODINGS = ("evt3", "libcaer", "libcaer_cmp", "mono", "trigger")
ENCODE_ENCODINGS = ("evt3", "mono")
_WORD_BYTES = {"evt3": 2, "libcaer_cmp": 2, "libcaer": 8, "mono": 8, "trigger": 8}
_MAX_DIM = 1 << 15
CHUNK_BYTES = 1 << 19  # evt3 slice when a packet's events are capped: <= 3 M events, 48 MB
_DROPPED = evt3.C_DROPPED - evt3.COUNTERS.start  # indices into the counters view
_WRAPS = evt3.C_WRAPS - evt3.COUNTERS.start
_NO_EVENTS = np.empty(0, dtype=EVENT_DTYPE)
_NO_EVENTS.flags.writeable = False
_NO_TRIGGERS = np.empty(0, dtype=TRIGGER_DTYPE)
_NO_TRIGGERS.flags.writeable = False
_U8, _U16, _U64 = np.dtype(np.uint8), np.dtype("<u2"), np.dtype("<u8")


def _as_bytes_array(payload: Any, encoding: str) -> np.ndarray:
    """View ``payload`` as a 1-D uint8 array without copying where possible."""
    if isinstance(payload, np.ndarray):
        if payload.dtype is _U8 and payload.ndim == 1 and payload.flags.c_contiguous:
            return payload
        if payload.dtype != np.uint8:
            raise DecodeError(
                f"{encoding} payload must be uint8 bytes, got a numpy array of {payload.dtype}"
            )
        return np.ascontiguousarray(payload.reshape(-1))
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return np.frombuffer(payload, dtype=np.uint8)
    if isinstance(payload, array.array):  # rclpy's uint8[] fields: array.array("B")
        if payload.itemsize != 1:
            raise DecodeError(
                f"{encoding} payload must be bytes, got an array.array of {payload.typecode!r}"
            )
        return np.frombuffer(payload, dtype=np.uint8)
    if isinstance(payload, (list, tuple)):
        try:
            return np.asarray(payload, dtype=np.uint8)
        except (ValueError, OverflowError, TypeError) as exc:
            raise DecodeError(f"{encoding} payload is not a byte sequence: {exc}") from None
    raise DecodeError(f"{encoding} payload must be bytes or a uint8 array, got {type(payload)}")


class Decoder:
    """Stateful decoder for one event stream.

    The state (evt3: time, wraps, y, vector base; libcaer_cmp: x, vector base) carries across
    :meth:`decode` calls, so feed the packets of one stream in order to one decoder.

    Args:
        encoding: one of :data:`DECODE_ENCODINGS`.
        width: sensor width in pixels; events with x >= width are dropped and counted.
        height: sensor height in pixels; events with y >= height are dropped and counted.

    Raises:
        DecodeError: for an unsupported encoding or an invalid sensor size.
    """

    def __init__(self, encoding: str, width: int, height: int) -> None:
        if encoding not in DECODE_ENCODINGS:
            raise DecodeError(
                f"unsupported event encoding {encoding!r}; supported: {', '.join(DECODE_ENCODINGS)}"
            )
        if not (0 < int(width) <= _MAX_DIM and 0 < int(height) <= _MAX_DIM):
            raise DecodeError(f"{encoding}: invalid sensor size {width}x{height}")
        self.encoding = encoding
        self.width = int(width)
        self.height = int(height)
        self.last_triggers = np.empty(0, dtype=TRIGGER_DTYPE)
        self._ctx = evt3.new_context(self.width, self.height)  # state + counters (kernels)
        self._counters = self._ctx[evt3.COUNTERS]
        self._unknown = self._ctx[evt3.UNKNOWN]
        self._packets = self._words = self._events = self._triggers = self._truncated = 0
        self._overflow = 0  # events beyond a packet's max_events (the oldest)
        self.reset()

    def reset(self) -> None:
        """Forget the stream state (e.g. after a bag loop); statistics are kept."""
        if self.encoding == "libcaer_cmp":
            self._state = np.zeros(libcaer_cmp.STATE_SIZE, dtype=np.int64)
        else:
            evt3.reset_state(self._ctx)

    def decode(
        self,
        payload: Any,
        time_base: int = 0,
        is_bigendian: bool = False,
        max_events: int | None = None,
    ) -> np.ndarray:
        """Decode one packet payload.

        Args:
            payload: the packet's ``events`` bytes (bytes, bytearray, memoryview, uint8 array,
                or the ``array.array("B")`` rclpy messages hold).
            time_base: the packet's ``time_base`` in ns (unused by ``evt3``).
            is_bigendian: the packet's ``is_bigendian`` flag; big-endian payloads are refused.
            max_events: keep at most the newest this many events of the packet (None: all);
                the older ones are counted in ``stats.dropped_overflow``. evt3 packets are then
                decoded in slices of :data:`CHUNK_BYTES`, so memory stays bounded even where
                vector words expand 2 bytes into 12 events (16 bytes each).

        Returns:
            :data:`EVENT_DTYPE` events in stream order. Trigger events of this packet are in
            :attr:`last_triggers`. Bad words, trailing partial words and out-of-range events are
            counted in :attr:`stats`, never raised. The array is the caller's: fresh, writable,
            never a view of ``payload`` nor kept by the decoder.

        Raises:
            DecodeError: for a big-endian payload or a payload that is not bytes.
            ValueError: ``max_events`` below 1.
        """
        if is_bigendian:
            raise DecodeError(f"{self.encoding}: big-endian payloads are not supported")
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        raw = _as_bytes_array(payload, self.encoding)
        wb = _WORD_BYTES[self.encoding]
        size = raw.size
        n_words = size // wb
        self._packets += 1
        self._words += n_words
        if size != n_words * wb:
            self._truncated += size - n_words * wb
            raw = raw[: n_words * wb]
        if self.encoding == "evt3" and max_events is not None and raw.size > CHUNK_BYTES:
            events, triggers = self._decode_evt3_newest(raw, max_events)
        elif self.encoding == "evt3":
            events, triggers = evt3.decode_evt3(raw.view(_U16), self._ctx)
        else:
            events, triggers = self._decode_other(raw, int(time_base))
        if max_events is not None and events.shape[0] > max_events:
            self._overflow += events.shape[0] - max_events
            events = events[-max_events:].copy()  # not a view that pins the whole decode
        self._events += events.shape[0]
        self._triggers += triggers.shape[0]
        self.last_triggers = triggers
        return events

    def _decode_evt3_newest(self, raw: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
        """evt3 in slices of :data:`CHUNK_BYTES`, the newest ``keep`` events kept.

        At most ``keep`` events plus one slice's are held at a time; the decoder state carries
        across slices as it does across packets.
        """
        parts: list[np.ndarray] = []
        triggers: list[np.ndarray] = []
        held = 0
        for lo in range(0, raw.size, CHUNK_BYTES):
            ev, tr = evt3.decode_evt3(raw[lo : lo + CHUNK_BYTES].view(_U16), self._ctx)
            parts.append(ev)
            triggers.append(tr)
            held += ev.shape[0]
            while held - parts[0].shape[0] >= keep:  # the oldest slice is not needed
                held -= parts[0].shape[0]
                self._overflow += parts.pop(0).shape[0]
        if held > keep:  # copy only the newest ``keep`` into the result
            self._overflow += held - keep
            parts[0] = parts[0][held - keep :]
        return concat_structured(parts, EVENT_DTYPE), concat_structured(triggers, TRIGGER_DTYPE)

    def _decode_other(self, raw: np.ndarray, tb: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode a whole-word payload of the encodings other than ``evt3``."""
        triggers = _NO_TRIGGERS
        if self.encoding == "libcaer_cmp":
            events = libcaer_cmp.decode_libcaer_cmp(
                raw.view(_U16),
                tb,
                self.width,
                self.height,
                self._state,
                self._counters,
                self._unknown,
            )
        elif self.encoding == "mono":
            events, dropped = mono.decode_mono(raw.view(_U64), tb, self.width, self.height)
            self._counters[_DROPPED] += dropped
        elif self.encoding == "trigger":
            events = _NO_EVENTS
            triggers = mono.decode_trigger(raw.view(_U64), tb)
        else:  # libcaer
            events, dropped, rolls = mono.decode_libcaer(
                raw.view(mono.LIBCAER_RECORD), tb, self.width, self.height
            )
            self._counters[_DROPPED] += dropped
            self._counters[_WRAPS] += rolls
        return events, triggers

    @property
    def stats(self) -> DecodeStats:
        """A snapshot of the running counters (see :class:`DecodeStats`)."""
        c = self._ctx
        return DecodeStats(
            packets=self._packets,
            words=self._words,
            events=self._events,
            triggers=self._triggers,
            dropped_out_of_range=int(c[evt3.C_DROPPED]),
            skipped_before_time=int(c[evt3.C_SKIPPED]),
            unknown_words=int(c[evt3.C_UNKNOWN]),
            truncated_bytes=self._truncated,
            time_wraps=int(c[evt3.C_WRAPS]),
            dropped_overflow=self._overflow,
            unknown_codes={int(k): int(self._unknown[k]) for k in np.nonzero(self._unknown)[0]},
        )

    def decode_packet(self, msg: Any, max_events: int | None = None) -> np.ndarray:
        """Decode an ``event_camera_msgs/EventPacket`` (rclpy or rosbags message).

        ``max_events`` as in :meth:`decode`.

        Raises:
            DecodeError: if the packet's encoding differs from this decoder's, or its sensor size
                differs from the decoder's, or it is big-endian.
        """
        if msg.encoding != self.encoding:
            raise DecodeError(
                f"packet encoding {msg.encoding!r} does not match decoder {self.encoding!r}"
            )
        if (int(msg.width), int(msg.height)) != (self.width, self.height):
            raise DecodeError(
                f"{self.encoding}: packet sensor {msg.width}x{msg.height} does not match "
                f"decoder {self.width}x{self.height}"
            )
        return self.decode(
            msg.events,
            time_base=msg.time_base,
            is_bigendian=msg.is_bigendian,
            max_events=max_events,
        )


def encode(events: np.ndarray, encoding: str, width: int, height: int, time_base: int = 0) -> bytes:
    """Encode events into an EventPacket payload.

    Args:
        events: :data:`EVENT_DTYPE` array.
        encoding: ``evt3`` (relative 24-bit us clock, vector words where they fit) or ``mono``.
        width: sensor width in pixels.
        height: sensor height in pixels.
        time_base: packet ``time_base`` in ns (``mono`` only: offsets are t - time_base).

    Returns:
        The payload bytes.

    Raises:
        DecodeError: for an encoding without an encoder.
        ValueError: for events the encoding cannot represent.
    """
    if encoding == "evt3":
        return evt3_encode.encode_evt3(events, width, height)
    if encoding == "mono":
        return mono.encode_mono(events, time_base, width, height)
    raise DecodeError(
        f"no encoder for event encoding {encoding!r}; supported: {', '.join(ENCODE_ENCODINGS)}"
    )
