"""Settings of the ROS-free pipeline: one frozen dataclass, shared by the node, replay and bench.

Every field is also a ROS parameter of the node (same name; ``config/facealign.yaml`` documents
them); :data:`PARAMETER_RANGES` gives the ranges the node's ``ParameterDescriptor`` declare.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("fused", "events", "rgb")
"""``fused``: answer every RGB frame with the event window ending at its stamp (events-only on
the event grid while RGB is missing); ``events``: answer on a grid of ``rate_hz`` in event time,
reusing the newest RGB frame while it is fresh; ``rgb``: answer every RGB frame from RGB only."""

DEVICES = ("auto", "cpu", "cuda")
FACE_DETECTORS = ("auto", "blazeface", "grid")
"""``blazeface``: a face search starts from BlazeFace's boxes in the RGB frame (the model fetched
by ``facealign fetch-detector``; an error when it is missing); ``grid``: from the landmark
network's scores of grid crops; ``auto``: BlazeFace when its model is there, else the grid. Without
an RGB frame, or when BlazeFace finds no face, the search uses the grid."""
MAX_SENSOR_SIDE = 4096
"""Largest event sensor side (px) the pipeline accepts. Event sensors are at most 1280 px wide
today; a face search over a (claimed) 8192 px sensor needs ~5 GB and ~14 s per target."""
DEFAULT_MODEL = "cmfa_lite.safetensors"
"""File name of the shipped weights under ``facealign_ros/weights``."""


def default_model_path() -> Path:
    """Path of the shipped lite weights (``facealign_ros/weights/cmfa_lite.safetensors``)."""
    return Path(str(resources.files("facealign_ros").joinpath("weights", DEFAULT_MODEL)))


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline does; validated on construction, unknown keys rejected by ``from_dict``.

    Attributes:
        mode: one of :data:`MODES`.
        rate_hz: answer rate on the event grid (``events`` mode; ``fused`` without RGB), Hz.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for the network.
        model: checkpoint path; empty = the shipped weights (:func:`default_model_path`).
        torch_threads: intra-op threads of torch (1 leaves a core to decoding on small CPUs);
            0 leaves torch's default.
        face_detector: one of :data:`FACE_DETECTORS`.
        face_detector_model: BlazeFace ``.tflite`` path; empty = the fetched one in the cache.
        face_detector_threshold: BlazeFace probability a face box needs.
        face_detector_dim_level: frames whose 99.5th percentile is under this (0-255) are
            blurred and contrast-stretched before BlazeFace looks at them (dark frames: fewer
            detections off the face); 0 = never.
        redetect: while a face is tracked, BlazeFace (when in use) looks at each new RGB frame:
            the crop moves to the detected face on the tracked box (such a frame counts as a
            hit), and the track restarts at the best face where none is on it (a wrong lock);
            after a look where they agree closely the next frame is skipped.
        redetect_interval_ms: at most one such check this often (input time); 0 = every frame.
        redetect_looks: looks that find faces only elsewhere, since a look last confirmed the
            track, before it restarts. 2 keeps a good track through a single false detection
            (dark, noisy frames) but corrects a real wrong lock later (docs/MODEL_CARD.md:
            neither is better on the dark small-pixel test bags).
        detect_threshold: score (mean confidence x box plausibility) a detection needs.
        track_threshold: mean confidence under which a tracked frame counts as a miss.
        lost_after: consecutive misses after which the face is dropped ("no face").
        detect_interval_ms: while no face is tracked, search at most this often (input time).
        detect_candidates: crops scored per search (the most event-/texture-active ones).
        min_face_px: smallest face box side searched, sensor pixels.
        warm_start: start the model from the previous landmarks when tracking (fewer stages).
            Alone it lets the shipped lite weights drift in scale (+0.5 % a frame), hence
            ``warm_anchor_every`` (docs/MODEL_CARD.md).
        warm_stages: stages run in a warm start (the finest ones).
        warm_anchor_every: with ``warm_start``, every this-many tracked frames runs all stages
            from the mean shape instead (re-anchors the scale a warm start lets drift).
        smoothing: One-Euro smoothing of the landmarks of a tracked face.
        smoothing_min_cutoff: One-Euro minimum cut-off frequency, Hz.
        smoothing_beta: One-Euro speed coefficient (per face-box side per second).
        pose_min_confidence: landmarks under this confidence are not used for PnP.
        rgb_max_age_ms: ``events`` mode reuses the newest RGB frame up to this age.
        rgb_reuse_tolerance: ``events`` mode reuses the RGB features of the newest frame (same
            crop) while the tracked box moves less than this fraction of its side; else the
            frame is cropped and encoded again. 0: only for an unchanged box.
        rgb_timeout_ms: ``fused`` answers on the event grid after this long without RGB.
        event_timeout_ms: events older than this at an image stamp count as missing events.
        max_wait_ms: how long (input time) an RGB frame waits for events up to its stamp.
        buffer_ms: event history kept, ms.
        max_buffer_events: most events kept in the buffer.
        max_window_events: most events used per window (the newest; bounds floods).
        loop_threshold_ms: a header stamp this far behind the previous one means a bag loop or
            a restart: all state is reset. Smaller steps back are dropped and counted.
        max_event_skew_ms: events mapped further than this from their packet's stamp are dropped.
        sensor_width: event sensor width, px; 0 = from the first packet (or the image in ``rgb``).
        sensor_height: event sensor height, px; 0 = from the first packet.
        homography: row-major 3x3 map from RGB pixels to event pixels (identity: registered).
        anti_flicker: drop the events of pixels firing periodically in the band below (lamps on
            50/60 Hz mains flicker at 100/120 Hz; :mod:`facealign_ros.events.flicker`).
        anti_flicker_min_hz: lowest flicker frequency dropped, Hz.
        anti_flicker_max_hz: highest flicker frequency dropped, Hz.
    """

    mode: str = "fused"
    rate_hz: float = 100.0
    device: str = "auto"
    model: str = ""
    torch_threads: int = 1
    face_detector: str = "auto"
    face_detector_model: str = ""
    face_detector_threshold: float = 0.5
    face_detector_dim_level: float = 100.0
    redetect: bool = True
    redetect_interval_ms: float = 0.0
    redetect_looks: int = 1
    detect_threshold: float = 0.1
    track_threshold: float = 0.05
    lost_after: int = 3
    detect_interval_ms: float = 100.0
    detect_candidates: int = 6
    min_face_px: int = 32
    warm_start: bool = True
    warm_stages: int = 1
    warm_anchor_every: int = 2
    smoothing: bool = False
    smoothing_min_cutoff: float = 1.0
    smoothing_beta: float = 0.5
    pose_min_confidence: float = 0.3
    rgb_max_age_ms: float = 100.0
    rgb_reuse_tolerance: float = 0.1
    rgb_timeout_ms: float = 500.0
    event_timeout_ms: float = 200.0
    max_wait_ms: float = 50.0
    buffer_ms: float = 500.0
    max_buffer_events: int = 4_000_000
    max_window_events: int = 400_000
    loop_threshold_ms: float = 500.0
    max_event_skew_ms: float = 200.0
    sensor_width: int = 0
    sensor_height: int = 0
    homography: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    anti_flicker: bool = False
    anti_flicker_min_hz: float = 80.0
    anti_flicker_max_hz: float = 150.0

    def __post_init__(self) -> None:
        for name in ("model", "face_detector_model"):
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        if wrong := _type_errors(self):
            raise ValueError(f"invalid PipelineConfig: {'; '.join(wrong)}")
        for f in dataclasses.fields(self):  # numpy scalars -> Python ones (to_dict is JSON)
            default = f.default
            if isinstance(default, (bool, int, float)):
                object.__setattr__(self, f.name, type(default)(getattr(self, f.name)))
        try:
            if isinstance(self.homography, (str, bytes)):
                raise TypeError("a string")
            object.__setattr__(self, "homography", tuple(float(v) for v in self.homography))
        except (TypeError, ValueError):
            raise ValueError(
                f"invalid PipelineConfig: homography {self.homography!r} needs 9 finite numbers"
            ) from None
        errors = [
            name
            for name, (lo, hi) in PARAMETER_RANGES.items()
            if not lo <= float(getattr(self, name)) <= hi
        ]
        if errors:
            ranges = ", ".join(
                f"{n}={getattr(self, n)!r} not in {PARAMETER_RANGES[n]}" for n in errors
            )
            raise ValueError(f"invalid PipelineConfig: {ranges}")
        if self.mode not in MODES:
            raise ValueError(f"invalid PipelineConfig: mode {self.mode!r}; choose from {MODES}")
        if self.face_detector not in FACE_DETECTORS:
            raise ValueError(
                f"invalid PipelineConfig: face_detector {self.face_detector!r}; "
                f"choose from {FACE_DETECTORS}"
            )
        if not (self.device in DEVICES or re.fullmatch(r"cuda:\d+", self.device)):
            raise ValueError(
                f"invalid PipelineConfig: device {self.device!r}; choose {DEVICES} or cuda:N"
            )
        if self.anti_flicker_min_hz >= self.anti_flicker_max_hz:
            raise ValueError(
                f"invalid PipelineConfig: anti_flicker_min_hz {self.anti_flicker_min_hz} must be "
                f"under anti_flicker_max_hz {self.anti_flicker_max_hz}"
            )
        if (self.sensor_width == 0) != (self.sensor_height == 0):
            raise ValueError(
                f"invalid PipelineConfig: sensor_width {self.sensor_width} and sensor_height "
                f"{self.sensor_height}: set both, or neither (0: from the first packet)"
            )
        if len(self.homography) != 9 or not np.all(np.isfinite(self.homography)):
            raise ValueError("invalid PipelineConfig: homography needs 9 finite numbers")
        if abs(np.linalg.det(self.homography_matrix)) < 1e-12:
            raise ValueError("invalid PipelineConfig: homography is singular")

    @property
    def homography_matrix(self) -> np.ndarray:
        """``(3, 3)`` RGB -> event pixel homography."""
        return np.asarray(self.homography, dtype=np.float64).reshape(3, 3)

    @property
    def registered(self) -> bool:
        """True when the homography is the identity (RGB and event pixels coincide)."""
        return bool(np.allclose(self.homography_matrix, np.eye(3)))

    @property
    def model_path(self) -> Path:
        """The checkpoint to load: ``model`` or the shipped weights."""
        return Path(self.model).expanduser() if self.model else default_model_path()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (the homography as a list)."""
        d = dataclasses.asdict(self)
        d["homography"] = list(self.homography)
        return d

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PipelineConfig:
        """Build from a mapping; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(values) - known):
            raise ValueError(f"unknown PipelineConfig keys {unknown}")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> PipelineConfig:
        """Copy with some fields changed (validated)."""
        return PipelineConfig.from_dict({**self.to_dict(), **changes})


def _type_errors(config: PipelineConfig) -> list[str]:
    """Fields whose value is not of their default's type (an int is a float; a bool no number).

    Returns:
        One ``"name=value is not type"`` line per such field (``homography``: checked apart).
    """
    wrong = []
    for f in dataclasses.fields(config):
        value, default = getattr(config, f.name), f.default
        is_bool = isinstance(value, (bool, np.bool_))
        if isinstance(default, bool):
            ok = is_bool
        elif isinstance(default, int):
            ok = isinstance(value, (int, np.integer)) and not is_bool
        elif isinstance(default, float):
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not is_bool
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            continue
        if not ok:
            wrong.append(f"{f.name}={value!r} is not {type(default).__name__}")
    return wrong


PARAMETER_RANGES: dict[str, tuple[float, float]] = {
    "rate_hz": (1.0, 1000.0),
    "torch_threads": (0, 64),
    "face_detector_threshold": (0.01, 1.0),
    "face_detector_dim_level": (0.0, 255.0),
    "redetect_interval_ms": (0.0, 60_000.0),
    "redetect_looks": (1, 100),
    "detect_threshold": (0.0, 1.0),
    "track_threshold": (0.0, 1.0),
    "lost_after": (1, 1000),
    "detect_interval_ms": (0.0, 10_000.0),
    "detect_candidates": (1, 64),
    "min_face_px": (8, 4096),
    "warm_stages": (1, 8),
    "warm_anchor_every": (1, 1000),
    "smoothing_min_cutoff": (0.01, 100.0),
    "smoothing_beta": (0.0, 100.0),
    "pose_min_confidence": (0.0, 1.0),
    "rgb_max_age_ms": (0.0, 10_000.0),
    "rgb_reuse_tolerance": (0.0, 1.0),
    "rgb_timeout_ms": (0.0, 60_000.0),
    "event_timeout_ms": (1.0, 60_000.0),
    "max_wait_ms": (0.0, 10_000.0),
    "buffer_ms": (10.0, 60_000.0),
    "max_buffer_events": (1000, 200_000_000),
    "max_window_events": (100, 100_000_000),
    "loop_threshold_ms": (1.0, 3_600_000.0),
    "max_event_skew_ms": (1.0, 3_600_000.0),
    "anti_flicker_min_hz": (1.0, 10_000.0),
    "anti_flicker_max_hz": (1.0, 10_000.0),
    "sensor_width": (0, MAX_SENSOR_SIDE),
    "sensor_height": (0, MAX_SENSOR_SIDE),
}
"""Inclusive ``(min, max)`` of the numeric fields (the node's descriptor ranges)."""
