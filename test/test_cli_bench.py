"""End to end: `facealign bench events --json` prints one JSON object with every figure."""

from __future__ import annotations

import subprocess
import sys

import pytest

KEYS = (
    "evt3_decode_mev_s",
    "evt3_decode_vs_expelliarmus",
    "time_surface_mev_s",
    "voxel_grid_mev_s",
    "count_frame_mev_s",
    "time_surface_vs_tonic",
    "voxel_grid_vs_tonic",
    "count_frame_vs_tonic",
)


def test_bench_events_json(json_command) -> None:
    pytest.importorskip("expelliarmus")
    pytest.importorskip("tonic")
    cmd = ("-m", "facealign_ros.cli", "bench", "events", "--json")
    result = json_command(*cmd, "--events", "20000", "--repeats", "1")
    for key in KEYS:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["evt3_exact"] is True
    assert isinstance(result["expelliarmus_exact"], bool)
    assert any("voxel_grid" in note for note in result["notes"])


def test_bench_rejects_bad_arguments() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "facealign_ros.cli", "bench", "events", "--events", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2 and "positive" in res.stderr
