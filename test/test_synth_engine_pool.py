"""Render worker processes of the synthetic engine: a dead worker is an error, never a hang."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import cv2
import pytest

from training.synth import engine
from training.synth.engine import rendered_intervals
from training.synth.scene import SceneConfig


def test_a_killed_render_worker_breaks_the_stream() -> None:
    cfg = SceneConfig(seed=3, seconds=0.4, head="ellipsoid")
    stream = rendered_intervals(cfg, workers=1)
    next(stream)  # the pool is up and rendering
    workers = multiprocessing.active_children()
    assert workers, "the render worker should be a child process"
    for proc in workers:
        proc.kill()
    with pytest.raises(BrokenProcessPool):
        for _ in stream:
            pass


def test_render_workers_are_single_threaded() -> None:
    # The pool is the parallelism: a worker running OpenCV's pool of one thread per core made
    # many bag processes on a many-core machine oversubscribe it tens of times over.
    cfg = SceneConfig(seed=3, seconds=0.2, head="ellipsoid")
    pool = ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=engine._init_worker,
        initargs=(cfg.as_dict(), None),
    )  # fmt: skip
    with pool:
        assert pool.submit(cv2.getNumThreads).result(timeout=120) == 1
