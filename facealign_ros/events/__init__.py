"""Event codecs, the event dtype, the event buffer and event representations.

>>> from facealign_ros.events import Decoder, DecodeError, encode
"""

from facealign_ros.events.buffer import BufferStats, EventBuffer
from facealign_ros.events.codec import DECODE_ENCODINGS, ENCODE_ENCODINGS, Decoder, encode
from facealign_ros.events.representations import (
    CountFrame,
    EventFrame,
    TimeSurface,
    VoxelGrid,
    count_frame,
    event_frame,
    time_surface,
    voxel_grid,
)
from facealign_ros.events.types import (
    EVENT_DTYPE,
    TRIGGER_DTYPE,
    DecodeError,
    DecodeStats,
    as_events,
    concat_events,
    empty_events,
    make_events,
)

__all__ = [
    "BufferStats",
    "CountFrame",
    "EventBuffer",
    "EventFrame",
    "TimeSurface",
    "VoxelGrid",
    "as_events",
    "concat_events",
    "count_frame",
    "event_frame",
    "time_surface",
    "voxel_grid",
    "DECODE_ENCODINGS",
    "ENCODE_ENCODINGS",
    "EVENT_DTYPE",
    "TRIGGER_DTYPE",
    "DecodeError",
    "DecodeStats",
    "Decoder",
    "empty_events",
    "encode",
    "make_events",
]
