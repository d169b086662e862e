"""The generation loop: rendering in worker processes, then camera, event simulator and rate cap.

Rendering is stateless per RGB frame interval (:meth:`Scene.interval`), so it is spread over
``workers`` processes (spawned, each with its own scene and renderer built from the same
config). The stateful parts run in order in the calling process: the event simulator
(:class:`~training.synth.esim.EventSimulator` carrying its per-pixel memory across
intervals), the RGB sensor noise, and the optional bandwidth limit. All random streams derive
from the scene seed, so the output does not depend on the number of workers.

Flicker: the light level times :func:`~training.synth.occluders.flicker` multiplies every
sub-frame; when flicker is on, extra event-simulator samples (16 per flicker period) are
interpolated between rendered sub-frames so the events follow the lamp, not the render times.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from facealign_ros.events import empty_events
from training.synth.camera import LIGHT_LEVELS, RGBCameraConfig, capture, rgb_camera
from training.synth.esim import EventConfig, EventSimulator
from training.synth.occluders import bandwidth_limit, flicker
from training.synth.scene import Interval, IntervalScene, Scene, SceneConfig

ENGINE_VERSION = "1.0.0"
"""Version of the synthetic engine written into every bag's metadata."""


@dataclass(frozen=True)
class SensorConfig:
    """Camera-side parameters that are not part of the scene.

    Attributes:
        events: event sensor model.
        rgb: RGB sensor model; None: defaults with the scene's fps and exposure < 0.9 / fps.
        max_event_rate_hz: event bandwidth limit, events/s (0: unlimited); excess events
            are dropped uniformly at random in 1 ms bins and counted.
    """

    events: EventConfig = EventConfig()
    rgb: RGBCameraConfig | None = None
    max_event_rate_hz: float = 0.0

    def rgb_for(self, scene: SceneConfig) -> RGBCameraConfig:
        """The RGB config used with ``scene``."""
        return self.rgb or rgb_camera("large-pixel", scene.fps)


@dataclass
class FrameOutput:
    """Everything produced for RGB frame ``k`` (1-based) and its interval ``((k-1)/fps, k/fps]``.

    Attributes:
        interval: the rendered interval (GT, exposure, sub-frame times); its luminance stack
            is dropped (set to an empty array) once the events are made.
        image: (H, W, 3) uint8 RGB frame (gamma encoded, noisy).
        events: sorted EVENT_DTYPE events with ``t`` in the interval, ns of scene time.
        dropped: events removed by the bandwidth limit in this interval.
    """

    interval: Interval
    image: np.ndarray
    events: np.ndarray
    dropped: int


_WORKER: tuple[Scene, RGBCameraConfig | None] | None = None
_WORKER_ERROR: Exception | None = None


def _init_worker(config: dict, rgb: RGBCameraConfig | None) -> None:
    # An exception escaping the initializer would only say "broken pool" (multiprocessing.Pool
    # even restarted the worker forever): keep it and raise it from the first task instead.
    global _WORKER, _WORKER_ERROR
    os.environ.setdefault("LP_NUM_THREADS", "1")  # one llvmpipe thread per worker process
    # The pool is the parallelism: OpenCV's own thread pool (one thread per core by default) in
    # every worker made 16 bag processes on a 16-core machine run ~270 threads and each bag
    # 2-20x slower (2026-11-27, device run of label_efficiency_gpu.sh).
    cv2.setNumThreads(1)
    try:
        _WORKER = (Scene(SceneConfig.from_dict(config)), rgb)
    except Exception as exc:  # noqa: BLE001 - re-raised by _render_interval
        _WORKER_ERROR = exc


def _render_interval(k: int) -> Interval:
    if _WORKER is None:  # the scene could not be built (e.g. AssetError): the caller gets it
        raise _WORKER_ERROR or RuntimeError("render worker was not initialised")
    return _WORKER[0].interval(k, _WORKER[1])


def rendered_intervals(
    config: SceneConfig,
    workers: int = 0,
    rgb: RGBCameraConfig | None = None,
    scene: IntervalScene | None = None,
) -> Iterator[Interval]:
    """Yield :meth:`Scene.interval` for k = 1..n in order, rendered by ``workers`` processes.

    Args:
        config: the scene.
        workers: worker processes; 0 renders in this process.
        rgb: RGB camera config used for auto exposure (None: the scene's default).
        scene: a scene source built by the caller (e.g. a
            :class:`~training.synth.photo.PhotoScene`) rendered in this process, ``workers``
            ignored; None builds :class:`Scene` from ``config``. Closed at the end either way.

    Yields:
        The intervals, in order.
    """
    n = config.n_frames
    if workers <= 0 or scene is not None:
        scene = scene if scene is not None else Scene(config)
        try:
            for k in range(1, n + 1):
                yield scene.interval(k, rgb)
        finally:
            scene.close()
        return
    # A process pool of concurrent.futures, not multiprocessing.Pool: a worker that dies (killed,
    # out of memory) breaks it with BrokenProcessPool instead of leaving .get() waiting forever.
    pool = ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
        initargs=(config.as_dict(), rgb),
    )  # fmt: skip
    try:
        pending: collections.deque = collections.deque()
        nxt = 1
        while nxt <= n or pending:
            while nxt <= n and len(pending) < 2 * workers:
                pending.append(pool.submit(_render_interval, nxt))
                nxt += 1
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _esim_inputs(iv: Interval, config: SceneConfig, skip_first: bool) -> tuple:
    """Luminance frames (light and flicker applied) and their times for the simulator."""
    times, lum = iv.times_ns, iv.luminance
    light = LIGHT_LEVELS[config.light]
    if config.flicker_hz > 0 and config.flicker_depth > 0:
        step = 1e9 / (16 * config.flicker_hz)
        extra = np.arange(times[0], times[-1], step).round().astype(np.int64)
        dense = np.union1d(times, extra)
        j = np.clip(np.searchsorted(times, dense, side="right") - 1, 0, len(times) - 2)
        f = ((dense - times[j]) / np.maximum(times[j + 1] - times[j], 1)).astype(np.float32)
        lum = lum[j] * (1 - f)[:, None, None] + lum[j + 1] * f[:, None, None]
        times = dense
    scale = light * flicker(times * 1e-9, config.flicker_hz, config.flicker_depth)
    lum = lum * scale.astype(np.float32)[:, None, None]
    if skip_first:
        return lum[1:], times[1:]
    return lum, times


def generate(
    config: SceneConfig,
    sensor: SensorConfig | None = None,
    workers: int = 0,
    scene: IntervalScene | None = None,
) -> Iterator[FrameOutput]:
    """Generate a scene frame by frame: RGB images, events and ground truth.

    Args:
        config: the scene.
        sensor: camera-side parameters (None: defaults).
        workers: rendering worker processes (0: render here).
        scene: a prebuilt scene source (see :func:`rendered_intervals`); None: ``Scene(config)``.

    Yields:
        One :class:`FrameOutput` per RGB frame, in order.
    """
    if scene is not None and scene.config != config:
        raise ValueError("the scene was built from another SceneConfig than the one given")
    sensor = sensor or SensorConfig()
    seed = config.seed
    sim = EventSimulator(config.width, config.height, sensor.events,
                         np.random.default_rng([seed, 101]))  # fmt: skip
    rgb_rng = np.random.default_rng([seed, 102])
    bw_rng = np.random.default_rng([seed, 103])
    rgb_cfg = sensor.rgb_for(config)
    light = LIGHT_LEVELS[config.light]
    for iv in rendered_intervals(config, workers, rgb_cfg, scene):
        lum, times = _esim_inputs(iv, config, skip_first=iv.k > 1)
        if iv.k == 1:
            sim.reset(lum[0], int(times[0]))
            lum, times = lum[1:], times[1:]
        events = sim.simulate(lum, times) if len(times) else empty_events()
        span = (int(config.frame_end_ns[iv.k - 1]), int(config.frame_end_ns[iv.k]))
        events, dropped = bandwidth_limit(events, sensor.max_event_rate_hz, bw_rng, span)
        image = capture(iv.irradiance[None], iv.exposure_s, iv.gain, light, rgb_rng, rgb_cfg)
        iv.luminance = np.empty((0,) + iv.luminance.shape[1:], np.float32)
        yield FrameOutput(iv, image, events, dropped)
