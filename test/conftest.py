"""Shared fixtures: tiny synthetic bags made by the tests themselves (session-scoped)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 0.4 s synthetic bag (346x260, low light, slow motion, seed 11) with ground truth."""
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    out = tmp_path_factory.mktemp("bags") / "synth_low"
    write_synth_bag(out, SceneConfig(seed=11, seconds=0.4, light="low", motion="slow"))
    return out


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep decoded-bag caches of the test run out of the user's cache directory."""
    import os

    os.environ.setdefault("FACEALIGN_CACHE", str(tmp_path_factory.mktemp("cache")))
