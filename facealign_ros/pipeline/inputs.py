"""Event input of the pipeline: packets -> decoder -> ROS time -> bounded event buffer.

:class:`EventStream` owns one :class:`~facealign_ros.events.Decoder`, a
:class:`~facealign_ros.events.clock.SensorClock` and an
:class:`~facealign_ros.events.EventBuffer` whose times are **ROS time** (ns), so windows are cut
directly at image or grid stamps. Problems raise :class:`InputError` with a drop reason (see
:data:`~facealign_ros.pipeline.health.DROP_REASONS`); the pipeline counts and logs them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facealign_ros.events import DECODE_ENCODINGS, DecodeError, Decoder, EventBuffer
from facealign_ros.events.clock import SensorClock
from facealign_ros.events.flicker import FlickerFilter
from facealign_ros.messages import stamp_ns
from facealign_ros.pipeline.config import MAX_SENSOR_SIDE

_MISMATCH_RESTART = 20
"""Consecutive packets of a new encoding/size after which the stream restarts with them."""


class InputError(ValueError):
    """An input message was rejected.

    Attributes:
        reason: drop reason (a key of the pipeline's drop counters).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _check_size(width: int, height: int) -> None:
    """Refuse a packet's sensor size outside ``1..MAX_SENSOR_SIDE`` px a side.

    Raises:
        InputError: ``bad_packet``.
    """
    if not (0 < width <= MAX_SENSOR_SIDE and 0 < height <= MAX_SENSOR_SIDE):
        raise InputError(
            "bad_packet",
            f"packet sensor size {width}x{height}: the pipeline takes 1 to {MAX_SENSOR_SIDE} px "
            "a side",
        )


def restamp_unstamped(msg: Any, receive_ns: int) -> bool:
    """Give ``msg`` (any message with a ``header``) ``receive_ns`` as stamp if its stamp is 0.

    For drivers that leave the header stamp empty: their messages are placed at their receive
    time (the node's clock, or a recording's log time) instead of being dropped ``unstamped``.
    Returns True if the stamp was set; a stamped message, or ``receive_ns <= 0``, is untouched.
    """
    stamp = msg.header.stamp
    if int(stamp.sec) or int(stamp.nanosec) or receive_ns <= 0:
        return False
    stamp.sec, stamp.nanosec = divmod(int(receive_ns), 1_000_000_000)
    return True


def require_stamp(stamp: int, what: str) -> int:
    """``stamp`` (ns) of a ``what`` message, checked to be set.

    Raises:
        InputError: ``unstamped`` for a stamp of 0 or less (a driver that leaves the header
            stamp empty: its messages cannot be placed in time).
    """
    if stamp <= 0:
        raise InputError(
            "unstamped",
            f"{what} with header stamp 0: its driver does not stamp messages, so they cannot be "
            "placed in time; dropped (set the driver to stamp with ROS time, or the node "
            "parameter restamp_unstamped; a recording of it: facealign replay "
            "--restamp-unstamped)",
        )
    return stamp


class EventStream:
    """Decode packets of one camera into a time-ordered buffer in ROS time.

    Args:
        buffer_ns: history kept, ns.
        max_events: most events kept.
        loop_threshold_ns: a packet stamped this far behind the previous one restarts everything
            (bag loop, camera restart); smaller steps back are decoded and merged if they fit.
        max_skew_ns: events mapped further than this from their packet stamp are dropped.
        width: expected sensor width (0 = from the first packet).
        height: expected sensor height (0 = from the first packet).
        flicker_band_hz: ``(min, max)`` flicker frequencies whose periodic pixels are dropped
            (:class:`~facealign_ros.events.flicker.FlickerFilter`); None = keep every event.
    """

    def __init__(
        self,
        buffer_ns: int,
        max_events: int,
        loop_threshold_ns: int,
        max_skew_ns: int,
        width: int = 0,
        height: int = 0,
        flicker_band_hz: tuple[float, float] | None = None,
    ) -> None:
        self.buffer = EventBuffer(max_events, buffer_ns, reorder_tolerance_ns=2_000_000)
        self.flicker_band_hz = flicker_band_hz
        self.flicker: FlickerFilter | None = None  # made with the decoder (it needs the size)
        # a host-clock step of half the tolerated skew restarts the map before events drop
        self.clock = SensorClock(step_s=max(max_skew_ns / 2e9, 1e-3))
        self.loop_threshold_ns = int(loop_threshold_ns)
        self.max_skew_ns = int(max_skew_ns)
        self._want = (int(width), int(height))
        self.decoder: Decoder | None = None
        self.last_stamp_ns: int | None = None
        self.loops = 0
        self._mismatch: tuple[str, int, int] | None = None
        self._mismatch_count = 0

    @property
    def size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the sensor once known."""
        if self.decoder is not None:
            return self.decoder.width, self.decoder.height
        return self._want if all(self._want) else None

    @property
    def latest_ns(self) -> int | None:
        """ROS time of the newest buffered event."""
        return self.buffer.latest_time

    def reset(self) -> None:
        """Forget the stream (decoder state, clock, buffer); counters are kept."""
        if self.decoder is not None:
            self.decoder.reset()
        if self.flicker is not None:
            self.flicker.reset()
        self.clock.reset()
        self.buffer.clear()
        self.last_stamp_ns = None

    def note_stamp(self, stamp: int) -> bool:
        """Check a header stamp against the previous one; True (and a reset) on a loop.

        Raises:
            InputError: ``unstamped`` for a stamp of 0 or less (a driver that leaves the header
                stamp empty: its events cannot be placed in time), ``time_backwards`` for a
                smaller step back (the message is dropped).
        """
        require_stamp(stamp, "event packet")
        last = self.last_stamp_ns
        if last is not None and stamp < last:
            if last - stamp > self.loop_threshold_ns:
                self.loops += 1
                self.reset()
                self.last_stamp_ns = stamp
                return True
            raise InputError("time_backwards", f"event packet stamp {stamp} < previous {last}")
        self.last_stamp_ns = stamp
        return False

    def _decoder_for(self, msg: Any) -> Decoder:
        enc, w, h = str(msg.encoding), int(msg.width), int(msg.height)
        if self.decoder is None:
            _check_size(w, h)
            if all(self._want) and (w, h) != self._want:
                raise InputError(
                    "packet_mismatch",
                    f"packet sensor {w}x{h} != configured {self._want[0]}x{self._want[1]}",
                )
            try:
                self.decoder = Decoder(enc, w, h)
            except DecodeError as exc:
                raise InputError("bad_packet", str(exc)) from None
            if self.flicker_band_hz is not None:
                self.flicker = FlickerFilter(w, h, *self.flicker_band_hz)
            return self.decoder
        d = self.decoder
        if (enc, w, h) == (d.encoding, d.width, d.height):
            self._mismatch, self._mismatch_count = None, 0
            return d
        if enc not in DECODE_ENCODINGS:
            raise InputError("bad_packet", f"packet with unsupported encoding {enc!r}")
        _check_size(w, h)
        key = (enc, w, h)
        self._mismatch_count = self._mismatch_count + 1 if key == self._mismatch else 1
        self._mismatch = key
        if self._mismatch_count < _MISMATCH_RESTART or all(self._want):
            raise InputError(
                "packet_mismatch",
                f"packet {enc} {w}x{h} differs from the stream's {d.encoding} {d.width}x{d.height}",
            )
        self.decoder = None  # the camera really changed: start over with it
        self.reset()
        self.loops += 1
        return self._decoder_for(msg)

    def push(self, msg: Any) -> int:
        """Decode one ``EventPacket`` into the buffer.

        Returns:
            Events of the packet now in the buffer.

        Raises:
            InputError: the packet was rejected (nothing buffered).
        """
        try:
            stamp = stamp_ns(msg)
            dec = self._decoder_for(msg)
            events = dec.decode_packet(msg, max_events=self.buffer.max_events)
        except InputError:
            raise
        except (DecodeError, AttributeError, TypeError, ValueError, OverflowError) as exc:
            raise InputError("bad_packet", f"cannot decode event packet: {exc}") from None
        if self.flicker is not None and events.size:
            keep = self.flicker.keep(events)  # sensor time, before the clock map
            if not keep.all():
                events = events[keep]
        if events.size == 0:
            return 0
        payload = getattr(msg, "events", None)
        if not events.flags.writeable or (
            isinstance(payload, np.ndarray) and np.may_share_memory(events, payload)
        ):
            events = events.copy()  # t is rewritten below: never touch the message's memory
        self.clock.observe(stamp, int(events["t"][0]))
        events["t"] = self.clock.to_ros(events["t"])
        t = events["t"]
        ok = (t >= stamp - self.max_skew_ns) & (t <= stamp + self.max_skew_ns)
        n_bad = int(events.size - np.count_nonzero(ok))
        if n_bad:
            events = events[ok]
        accepted = self.buffer.append(events) if events.size else 0
        if n_bad:
            raise InputError(
                "event_skew",
                f"{n_bad} events mapped > {self.max_skew_ns} ns from their packet stamp",
            )
        return accepted

    def window(self, t_end_ns: int, length_ns: int, max_events: int) -> tuple[np.ndarray, bool]:
        """Events with ``t_end - length <= t < t_end`` (at most the newest ``max_events``).

        Returns:
            ``(events, truncated)``.
        """
        ev = self.buffer.window(int(t_end_ns) - int(length_ns), int(t_end_ns))
        if ev.shape[0] > max_events:
            return ev[-max_events:], True
        return ev, False

    def stats(self) -> dict[str, Any]:
        """Decoder, clock and buffer counters as one JSON-able dict."""
        out: dict[str, Any] = {"loops": self.loops}
        if self.flicker is not None:
            out["flicker_events_dropped"] = self.flicker.dropped
        packet_overflow = 0  # the oldest events of packets larger than the buffer
        if self.decoder is not None:
            d = self.decoder.stats
            packet_overflow = d.dropped_overflow
            out.update(
                encoding=self.decoder.encoding,
                decode_errors=d.errors,
                time_wraps=d.time_wraps,
                dropped_out_of_range=d.dropped_out_of_range,
            )
        out["clock_resets"] = self.clock.stats.resets
        out["clock_offset_ns"] = self.clock.stats.offset_ns
        b = self.buffer.stats
        out["buffer_events"] = len(self.buffer)
        out["buffer_dropped"] = b.dropped_late + b.dropped_overflow + packet_overflow
        return out
