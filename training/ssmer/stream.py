"""The SSMER sample stream: windows of many bags, interleaved and shuffled, sharded, resumable.

Each data-loader worker of each process is one *shard* ``k`` of ``K = world_size x workers``.
A shard's stream is endless and depends only on ``(seed, k)``: epoch ``e`` visits its bags in an
order drawn from ``(seed, k, e)`` — with at least ``K`` sources, shard ``k`` takes every K-th
source of the epoch's permutation; with fewer, every shard reads all of them and keeps every
K-th window — reads ``interleave`` bags at once (windows picked at random among them) and
passes windows through a shuffle buffer. Views are computed only for windows that are handed
out, from a generator seeded by ``(seed, k, position)``.

Exact resume: ``torch.utils.data.DataLoader`` takes batches from its workers in turn, starting
with worker 0, so batch ``b`` comes from the worker playing *role* ``b % workers``. A stream
resumed after ``step`` batches lets worker ``w`` play role ``(w + step) % workers`` (so the first
batch after the resume still comes from role ``step % workers``); role ``r`` has produced
``ceil((step - r) / workers)`` batches, whose windows it skips (decoding, no views).

With fewer sources than shards all shards read all sources on one shared time grid (window phase
drawn from (seed, epoch, source)) and keep every K-th window, so shards never see the same or
overlapping-by-design windows. A shard whose share of the sources gives no window in an epoch
(e.g. only an aborted, too-short recording) reads all sources that epoch instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from facealign_ros.bag import BagError
from facealign_ros.events import DecodeError
from facealign_ros.face.detector import BlazeFaceDetector
from facealign_ros.face.preprocess import InputSpec
from training.ssmer.face_boxes import BOX_SOURCES, DetectorBoxes
from training.ssmer.sources import Source, Window, stream_windows
from training.ssmer.views import ViewAugment, make_views, make_views_with_points

LOG = logging.getLogger(__name__)


class WindowStream(IterableDataset):
    """Endless stream of ``(V, C, S, S)`` float32 view stacks (one per window).

    With ``dense_grid > 0`` each item is ``(views, points)``, points ``(V, dense_grid**2, 2)``
    (:func:`~training.ssmer.views.make_views_with_points`; the views are the same draws).

    Args:
        sources: event sources (from :func:`~training.ssmer.sources.find_sources`).
        spec: CMFA input specification (crop size, window, representations).
        views: view names (representations or ``all``).
        augment: view augmentation.
        seed: base seed.
        batch_size: per-process batch size (the unit of ``start_step``).
        rank: this process's rank.
        world_size: number of processes.
        num_workers: data-loader workers per process (0: the main process reads).
        start_step: batches already consumed (resume).
        stride_ms: spacing of window ends within a recording, ms.
        interleave: recordings read at once per shard.
        shuffle_buffer: windows held for shuffling per shard.
        box_source: ``activity`` or ``detector`` (:mod:`training.ssmer.face_boxes`); the
            detector is loaded in each worker on first use.
        detector_model: BlazeFace model path ("" = the cached one).
        dense_grid: side of the point grid for the dense objective (0: views only).
    """

    def __init__(
        self,
        sources: list[Source],
        spec: InputSpec,
        views: tuple[str, ...],
        augment: ViewAugment,
        *,
        seed: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        start_step: int = 0,
        stride_ms: float = 20.0,
        interleave: int = 4,
        shuffle_buffer: int = 64,
        box_source: str = "activity",
        detector_model: str = "",
        dense_grid: int = 0,
    ) -> None:
        super().__init__()
        if not sources:
            raise ValueError("WindowStream needs at least one source")
        self.sources = list(sources)
        self.spec, self.views, self.augment = spec, tuple(views), augment
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.num_workers, self.start_step = int(num_workers), int(start_step)
        self.stride_ns = int(round(stride_ms * 1e6))
        self.interleave, self.shuffle_buffer = max(1, interleave), max(1, shuffle_buffer)
        self.bad: list[str] = []
        if box_source not in BOX_SOURCES:
            raise ValueError(f"box_source must be one of {list(BOX_SOURCES)}, got {box_source!r}")
        self.box_source, self.detector_model = box_source, str(detector_model)
        self.dense_grid = int(dense_grid)
        self._detector: BlazeFaceDetector | None = None  # loaded in the worker that reads

    def face_boxes(self) -> DetectorBoxes | None:
        """Fresh detector boxes for one recording (None for activity boxes).

        Each recording needs its own: a shard reads ``interleave`` recordings at once, and their
        frames must not mix (recordings often share ROS times, e.g. synthetic ones). The
        detector itself is loaded once per process, on first use.
        """
        if self.box_source != "detector":
            return None
        if self._detector is None:
            self._detector = BlazeFaceDetector(self.detector_model)  # "" = the cached one
        return DetectorBoxes(self._detector, self.spec.box_scale)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_detector"] = None  # an OpenCV network does not pickle; workers load their own
        return state

    def role(self, worker: int) -> int:
        """The role (original worker index) that data-loader worker ``worker`` plays."""
        workers = max(1, self.num_workers)
        return (worker + self.start_step) % workers

    def _shard(self) -> tuple[int, int, int]:
        """``(shard, n_shards, role)`` of the calling process/worker."""
        info = get_worker_info()
        workers = max(1, self.num_workers)
        if info is not None and info.num_workers != workers:
            raise RuntimeError(
                f"WindowStream built for {workers} workers, loaded by {info.num_workers}"
            )
        role = self.role(info.id if info is not None else 0)
        return self.rank * workers + role, self.world_size * workers, role

    def skip_windows(self, role: int) -> int:
        """Windows the worker playing ``role`` already produced before ``start_step`` batches."""
        workers = max(1, self.num_workers)
        batches = max(0, -(-(self.start_step - role) // workers))
        return batches * self.batch_size

    def __iter__(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        shard, n_shards, role = self._shard()
        skip = self.skip_windows(role)
        for position, win in enumerate(self._shuffled(shard, n_shards)):
            if position < skip:
                continue
            rng = np.random.default_rng([self.seed, shard, position, 0x55])
            if self.dense_grid > 0:
                views, points = make_views_with_points(
                    win, self.spec, self.views, self.augment, rng, self.dense_grid
                )
                yield torch.from_numpy(views), torch.from_numpy(points)
            else:
                yield torch.from_numpy(make_views(win, self.spec, self.views, self.augment, rng))

    def _shuffled(self, shard: int, n_shards: int) -> Iterator[Window]:
        """The shard's windows through a shuffle buffer (endless)."""
        rng = np.random.default_rng([self.seed, shard, 0xB0F])
        buf: list[Window] = []
        for win in self._interleaved(shard, n_shards):
            if len(buf) < self.shuffle_buffer:
                buf.append(win)
                continue
            i = int(rng.integers(len(buf)))
            yield buf[i]
            buf[i] = win

    def _epoch_plan(
        self, shard: int, n_shards: int, epoch: int, everything: bool = False
    ) -> tuple[list[int], int]:
        """Source indices of this shard in ``epoch`` and the window modulus (1 or ``n_shards``).

        ``everything``: all sources, every ``n_shards``-th window (the fallback of a shard whose
        share gave nothing).
        """
        order = np.random.default_rng([self.seed, epoch, 0xE9]).permutation(len(self.sources))
        if len(self.sources) >= n_shards and not everything:
            return [int(i) for i in order[shard::n_shards]], 1
        return [int(i) for i in order], n_shards

    def _interleaved(self, shard: int, n_shards: int) -> Iterator[Window]:
        """Endless windows of the shard's sources, ``interleave`` recordings at a time."""
        epoch = 0
        while True:
            produced = yield from self._epoch(shard, n_shards, epoch, everything=False)
            if produced == 0:
                produced = yield from self._epoch(shard, n_shards, epoch, everything=True)
            if produced == 0:
                raise RuntimeError(
                    f"SSMER shard {shard}: no window in a whole epoch (sources too short or too "
                    "sparse for the window length / min_events)"
                )
            epoch += 1

    def _epoch(self, shard: int, n_shards: int, epoch: int, everything: bool) -> Iterator[Window]:
        """One epoch of the shard's windows; returns how many it yielded."""
        todo, modulus = self._epoch_plan(shard, n_shards, epoch, everything)
        rng = np.random.default_rng([self.seed, shard, epoch, int(everything), 0x1E])
        produced = 0
        active: list[Iterator[Window]] = []
        while todo or active:
            while todo and len(active) < self.interleave:
                i = todo.pop(0)
                phase_rng = np.random.default_rng([self.seed, epoch, i, 0x9A])  # shared grid
                phase = int(phase_rng.integers(self.stride_ns))
                active.append(self._guarded(self.sources[i], phase, modulus, shard % modulus))
            k = int(rng.integers(len(active)))
            win = next(active[k], None)
            if win is None:
                active.pop(k)
                continue
            produced += 1
            yield win
        return produced

    def _guarded(self, src: Source, phase: int, modulus: int, residue: int) -> Iterator[Window]:
        """Windows of one source (every ``modulus``-th); a corrupt bag ends its stream, logged."""
        try:
            wins = stream_windows(
                src, self.spec.window_ns, self.stride_ns, phase, face_boxes=self.face_boxes()
            )
            for i, win in enumerate(wins):
                if i % modulus == residue:
                    yield win
        except (BagError, DecodeError) as exc:
            key = f"{src.path}:{src.topic}"
            if key not in self.bad:
                self.bad.append(key)
                LOG.warning("SSMER: %s (rest of this recording skipped)", exc)
