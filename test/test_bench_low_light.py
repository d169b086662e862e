"""``python -m training.bench.low_light_rgb`` end to end on a generated bag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_darker_rgb_hurts_rgb_only_and_leaves_events_alone(synth_bag: Path, json_command) -> None:
    out = json_command(
        "-m", "training.bench.low_light_rgb", "--bags", str(synth_bag), "--light", "all",
        "--electrons", "1", "--threads", "1", "--json",
    )  # fmt: skip
    assert out["samples"] > 0 and out["light"] == "all"  # the bag is low light: all = low
    recorded, dark = out["rows"]
    assert recorded["electrons"] == "recorded" and dark["electrons"] == 1.0
    assert dark["event_nme"] == recorded["event_nme"]  # events are not re-exposed
    assert dark["rgb_nme"] > 1.5 * recorded["rgb_nme"]  # one electron per pixel: mostly noise


def test_a_light_level_without_samples_is_a_clear_error(synth_bag: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "training.bench.low_light_rgb", "--bags", str(synth_bag)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert res.returncode == 2 and "no normal-light samples" in res.stderr
    assert "--light all" in res.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "training.bench.low_light_rgb", "--bags", "x", "--electrons", "0"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "must be > 0" in bad.stderr
