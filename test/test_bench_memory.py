"""``training.bench.memory``: resident memory sampled while a block runs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from training.bench.memory import RssSampler, current_rss_mb

pytestmark = pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")


def test_sampler_sees_an_allocation_inside_its_block() -> None:
    before = current_rss_mb()
    assert before is not None and before > 0
    with RssSampler(period_s=0.005) as idle:
        time.sleep(0.05)
    with RssSampler(period_s=0.005) as busy:
        block = np.ones(64 * 2**20, np.uint8)  # 64 MiB, touched
        time.sleep(0.05)
        del block
    assert idle.peak_mb is not None and busy.peak_mb is not None
    assert busy.peak_mb - idle.peak_mb > 48  # the block was seen while it lived
