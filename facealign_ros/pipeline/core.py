"""The ROS-free pipeline: messages in, :class:`~.result.FaceResult` out (node, replay, bench).

Callbacks (:meth:`Pipeline.on_events`, :meth:`~Pipeline.on_image`,
:meth:`~Pipeline.on_camera_info`) only decode events into the buffer and store the newest
image; they never raise. One worker calls :meth:`Pipeline.try_step` (non-blocking lock), which
takes the newest *ready* target, drops older ones (counted as ``stale``) and answers it:

* ``fused``/``rgb``: the newest image; in ``fused`` it waits (input time, ``max_wait_ms``) until
  the events cover its stamp;
* ``events`` (and ``fused`` while RGB is missing): the newest point of a ``rate_hz`` grid that
  the events cover, with the newest RGB frame if it is fresh.

``now_ns`` arguments are the *input clock* used for waiting: the node passes nothing (monotonic
wall time), replay passes the bag's log time, so replay is deterministic.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from facealign_ros.face.pose import UnsupportedDistortionError, camera_distortion
from facealign_ros.messages import MessageError, image_from_msg, stamp_ns
from facealign_ros.pipeline.align import FaceStage
from facealign_ros.pipeline.config import MAX_SENSOR_SIDE, PipelineConfig
from facealign_ros.pipeline.detection import load_detector
from facealign_ros.pipeline.health import LogFn, PipelineStats, ThrottledLog
from facealign_ros.pipeline.inputs import EventStream, InputError, require_stamp
from facealign_ros.pipeline.model import ModelRunner, load_model
from facealign_ros.pipeline.result import FaceResult

_MS = 1_000_000
_SIDE_LIMIT = f"the pipeline takes 1 to {MAX_SENSOR_SIDE} px a side"


@dataclass
class _Job:
    target_ns: int
    wall_ns: int  # monotonic arrival of the input (latency)
    now_ns: int  # input-clock arrival (waiting)
    image: Any | None  # sensor_msgs/Image of an image job


class Pipeline:
    """Latest-only face alignment over event packets and images.

    Args:
        config: pipeline settings.
        model: the loaded network (see :func:`~.model.load_model`).
        logger: where throttled warnings go (a ``logging.Logger`` or ``callable(str)``).
        keep_debug: keep each answer's inputs in ``FaceResult.debug`` (debug image, demo).

    Raises:
        facealign_ros.face.detector.DetectorError: the configured face detector cannot load.
    """

    def __init__(
        self,
        config: PipelineConfig,
        model: ModelRunner,
        logger: logging.Logger | LogFn | None = None,
        keep_debug: bool = False,
    ) -> None:
        self.config = config
        self.model = model
        self.stats = PipelineStats()
        self.log = ThrottledLog(logger)
        c = config
        self.events = EventStream(
            int(c.buffer_ms * _MS),
            c.max_buffer_events,
            int(c.loop_threshold_ms * _MS),
            int(c.max_event_skew_ms * _MS),
            c.sensor_width,
            c.sensor_height,
            (c.anti_flicker_min_hz, c.anti_flicker_max_hz) if c.anti_flicker else None,
        )
        detector = load_detector(config, lambda m: self.log.warn("detector", m))
        self.face = FaceStage(config, model, self.stats, keep_debug, detector)
        self._slot = threading.Lock()  # inputs (held briefly)
        self._work = threading.Lock()  # the worker (non-blocking)
        self._pending: _Job | None = None
        self._image: tuple[int, Any] | None = None  # newest (stamp, Image)
        self._first_event_ns: int | None = None
        self._last_event: tuple[int, int] = (0, 0)  # (wall, input clock) of the newest packet
        self._next_grid: int | None = None
        self.frame_id = ""

    @classmethod
    def from_config(
        cls, config: PipelineConfig, logger: logging.Logger | LogFn | None = None, **kw: Any
    ) -> Pipeline:
        """Load ``config.model_path`` and build the pipeline (raises ``ModelLoadError``)."""
        model = load_model(config.model_path, config.device, config.torch_threads)
        return cls(config, model, logger, **kw)

    # ------------------------------------------------------------------ callbacks

    def _reject(self, exc: InputError) -> None:
        self.stats.drop(exc.reason)
        self.log.warn(exc.reason, f"dropped input ({exc.reason}): {exc}")

    def _clear(self) -> None:
        self.events.reset()
        self.face.reset()
        self._pending, self._image, self._next_grid = None, None, None
        self._first_event_ns = None

    def _loop(self, what: str) -> None:
        """A stamp jumped back past the loop threshold: start over (bag loop, restart)."""
        self._clear()
        self.stats.count("loops")
        self.log.warn("loop", f"{what} stamp jumped back: bag loop or restart, state reset")

    def on_events(self, msg: Any, now_ns: int | None = None) -> bool:
        """Decode an ``event_camera_msgs/EventPacket`` into the buffer; False if dropped."""
        wall = time.monotonic_ns()
        try:
            with self._slot:
                if self.events.note_stamp(stamp_ns(msg)):
                    self._loop("event packet")
                n = self.events.push(msg)
                if self._first_event_ns is None:
                    self._first_event_ns = self.events.latest_ns
                self._last_event = (wall, wall if now_ns is None else int(now_ns))
                self.frame_id = self.frame_id or str(msg.header.frame_id)
        except InputError as exc:
            self._reject(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - never raise out of a callback
            self._reject(InputError("bad_packet", f"malformed event packet: {exc!r}"))
            return False
        self.stats.count("event_packets")
        self.stats.count("events", n)
        return True

    def on_image(self, msg: Any, now_ns: int | None = None) -> bool:
        """Store a ``sensor_msgs/Image`` or ``CompressedImage`` (decoded later, by the worker).

        Returns False if dropped.
        """
        wall = time.monotonic_ns()
        try:
            stamp = stamp_ns(msg)
            frame = str(msg.header.frame_id)
            require_stamp(stamp, "image")
            side = max(int(getattr(msg, "width", 0)), int(getattr(msg, "height", 0)))
            if side > MAX_SENSOR_SIDE:  # raw images only; compressed ones are checked decoded
                raise InputError("bad_image", f"image {msg.width}x{msg.height}: {_SIDE_LIMIT}")
        except InputError as exc:
            self._reject(exc)
            return False
        except Exception as exc:  # noqa: BLE001
            self._reject(InputError("bad_image", f"malformed image message: {exc!r}"))
            return False
        with self._slot:
            if self._image is not None and stamp < self._image[0]:
                if self._image[0] - stamp > self.config.loop_threshold_ms * _MS:
                    self._loop("image")
                else:
                    self._reject(InputError("time_backwards", f"image stamp {stamp} went back"))
                    return False
            self._image = (stamp, msg)
            self.frame_id = self.frame_id or frame
            if self.config.mode != "events":
                if self._pending is not None:
                    self.stats.drop("stale")
                self._pending = _Job(stamp, wall, wall if now_ns is None else int(now_ns), msg)
        self.stats.count("images")
        return True

    def on_camera_info(self, msg: Any) -> bool:
        """Store the intrinsics and distortion of a ``sensor_msgs/CameraInfo``; False if unusable.

        Distortion: see :func:`~facealign_ros.face.pose.camera_distortion`; a model it does not
        know keeps the camera matrix, without the distortion (counted as
        ``camera_info_distortion_ignored``, warned).
        """
        try:
            K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
            w, h = int(msg.width), int(msg.height)
            if not (np.all(np.isfinite(K)) and K[0, 0] > 0 and K[1, 1] > 0 and w > 0 and h > 0):
                raise ValueError(f"K={K.ravel().tolist()} size {w}x{h}")
            try:
                distortion = camera_distortion(str(msg.distortion_model), msg.d)
            except UnsupportedDistortionError as exc:
                distortion = None
                self.stats.count("camera_info_distortion_ignored")
                self.log.warn("distortion", f"camera_info: {exc}; head pose without it")
        except Exception as exc:  # noqa: BLE001
            self._reject(InputError("bad_camera_info", f"unusable camera_info: {exc}"))
            return False
        self.face.camera = (K, w, h, distortion)
        self.stats.count("camera_infos")
        return True

    # ------------------------------------------------------------------ scheduling

    def _rgb_missing(self) -> bool:
        latest = self.events.latest_ns
        if latest is None:
            return False
        ref = self._image[0] if self._image is not None else self._first_event_ns
        return ref is not None and latest - ref > self.config.rgb_timeout_ms * _MS

    def _take(self, now: int, flush: bool) -> _Job | None:
        c = self.config
        latest = self.events.latest_ns
        job = self._pending
        if job is not None:
            covered = latest is not None and latest >= job.target_ns
            no_events = latest is None or latest < job.target_ns - c.event_timeout_ms * _MS
            waited = now - job.now_ns >= c.max_wait_ms * _MS
            if c.mode == "rgb" or flush or covered or waited or no_events:
                self._pending = None
                return job
        if latest is None or not (
            c.mode == "events" or (c.mode == "fused" and self._rgb_missing())
        ):
            return None
        period = int(round(1e9 / c.rate_hz))
        if self._next_grid is None:
            self._next_grid = (latest // period) * period
        if latest < self._next_grid:
            return None
        k = (latest - self._next_grid) // period
        if k:
            self.stats.drop("stale", int(k))
        target = self._next_grid + k * period
        self._next_grid = target + period
        if c.mode == "fused":
            self.stats.drop("missing_rgb")
        return _Job(int(target), self._last_event[0], self._last_event[1], None)

    def try_step(self, now_ns: int | None = None) -> FaceResult | None:
        """:meth:`step` unless another thread is working (then None at once)."""
        if not self._work.acquire(blocking=False):
            return None
        try:
            return self._step(now_ns, False)
        finally:
            self._work.release()

    def step(self, now_ns: int | None = None, flush: bool = False) -> FaceResult | None:
        """Answer the newest ready target, if any (blocks while another step runs).

        Args:
            now_ns: input-clock time (default: monotonic wall time).
            flush: do not wait for events (end of a recording).

        Returns:
            The result, or None when nothing was ready (or the input was unusable, counted).
        """
        with self._work:
            return self._step(now_ns, flush)

    def _step(self, now_ns: int | None, flush: bool) -> FaceResult | None:
        now = time.monotonic_ns() if now_ns is None else int(now_ns)
        with self._slot:
            job = self._take(now, flush)
            image = self._image
        if job is None:
            return None
        self.stats.count("targets")
        t0 = time.perf_counter_ns()
        try:
            result = self._answer(job, image)
        except Exception as exc:  # noqa: BLE001 - the worker must survive anything
            self.stats.drop("inference_error")
            self.log.warn("inference_error", f"inference failed: {exc!r}")
            self.face.reset()
            return None
        if result is None:
            return None
        compute = (time.perf_counter_ns() - t0) / 1e6
        latency = (time.monotonic_ns() - job.wall_ns) / 1e6
        self.stats.latency(latency, compute)
        self.stats.count("results")
        self.stats.count("faces" if result.has_face else "no_face")
        return _with_times(result, latency, compute)

    # ------------------------------------------------------------------ answering

    def _rgb(self, job: _Job, image: tuple[int, Any] | None) -> tuple[int, Any] | None:
        """(stamp, Image) of the RGB frame answering ``job``, if any."""
        c = self.config
        if job.image is not None:
            return job.target_ns, job.image
        fresh = image is not None and abs(job.target_ns - image[0]) <= c.rgb_max_age_ms * _MS
        if c.mode == "events" and fresh and image is not None:
            return image
        return None

    def _answer(self, job: _Job, image: tuple[int, Any] | None) -> FaceResult | None:
        c = self.config
        frame = self._rgb(job, image)
        rgb, rgb_stamp = None, None
        if frame is not None:
            rgb_stamp, msg = frame
            try:
                rgb = image_from_msg(msg)
            except (MessageError, AttributeError, TypeError, ValueError) as exc:
                self._reject(InputError("bad_image", f"cannot convert image: {exc}"))
            if rgb is not None and max(rgb.shape[:2]) > MAX_SENSOR_SIDE:  # e.g. a decoded JPEG
                h, w = rgb.shape[:2]
                self._reject(InputError("bad_image", f"image {w}x{h}: {_SIDE_LIMIT}"))
                rgb = None
        size = self.events.size if c.mode != "rgb" else None
        if size is None and rgb is not None:
            size = (rgb.shape[1], rgb.shape[0])
        if size is None:
            self.stats.drop("no_input")
            return None
        if rgb is not None:
            if not c.registered:
                rgb = cv2.warpPerspective(rgb, c.homography_matrix, size)
            elif (rgb.shape[1], rgb.shape[0]) != size:
                w, h = rgb.shape[1], rgb.shape[0]
                self._reject(
                    InputError(
                        "image_size",
                        f"image {w}x{h} != sensor {size[0]}x{size[1]}: set the homography "
                        "parameter (RGB to event pixels; for a co-axial rig of another "
                        f"resolution [{size[0] / w:.4g}, 0, 0, 0, {size[1] / h:.4g}, 0, 0, 0, 1])",
                    )
                )
                rgb = None
        events = None
        latest = self.events.latest_ns
        if (
            c.mode != "rgb"
            and latest is not None
            and (latest >= job.target_ns - c.event_timeout_ms * _MS)
        ):
            events, cut = self.events.window(
                job.target_ns, self.model.spec.window_ns, c.max_window_events
            )
            if cut:
                self.stats.count("windows_truncated")
        if events is None and c.mode == "fused" and job.image is not None:
            self.stats.drop("missing_events")
        if events is None and rgb is None:
            self.stats.drop("no_input")
            return None
        mode = (
            "fused"
            if events is not None and rgb is not None
            else "rgb"
            if rgb is not None
            else "events"
        )
        return self.face.answer(job.target_ns, events, rgb, size, mode, self.frame_id, rgb_stamp)

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget all inputs and the track (counters are kept)."""
        with self._work, self._slot:
            self._clear()

    def snapshot(self) -> dict[str, Any]:
        """Counters, drops, latency percentiles and event-stream state (JSON-able)."""
        out = self.stats.snapshot()
        out["stream"] = self.events.stats()
        track = self.face.tracker.track
        out["tracking"] = track.face_id if track else None
        out["device"] = self.model.device
        out["mode"] = self.config.mode
        out["face_detector"] = "grid" if self.face.detector is None else "blazeface"
        return out

    def intrinsics(self, size: tuple[int, int]) -> np.ndarray:
        """``(3, 3)`` camera matrix for sensor ``(width, height)`` (the debug image's pose axes).

        camera_info's K (scaled when its size differs), else a default pinhole.
        """
        return self.face.intrinsics(size)

    def camera_model(
        self, size: tuple[int, int]
    ) -> tuple[np.ndarray, tuple[str, np.ndarray] | None]:
        """``(K, distortion)`` for sensor ``(width, height)`` (the debug image's pose axes).

        :meth:`intrinsics` and camera_info's ``(model, coefficients)`` distortion (None without).
        """
        return self.face.camera_model(size)

    def warm_up(self) -> None:
        """Prepare the network's per-frame graphs now, not on the first answers of a stream.

        Node configure, replay and bench call it; ~2.5 s on a 2-core CPU.
        """
        self.model.warm_up(self.config.warm_stages)

    def release(self) -> None:
        """Free the network's GPU memory (lifecycle deactivate/cleanup)."""
        self.model.release()


def _with_times(r: FaceResult, latency: float, compute: float) -> FaceResult:
    return replace(r, latency_ms=latency, compute_ms=compute)
