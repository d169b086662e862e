"""Render worker processes of the synthetic engine: a dead worker is an error, never a hang."""

from __future__ import annotations

import multiprocessing
from concurrent.futures.process import BrokenProcessPool

import pytest

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
