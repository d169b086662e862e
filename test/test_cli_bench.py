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
    assert res.returncode == 2 and ">= 1000 events" in res.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "events", "--events", "1"], ">= 1000 events"),
        (["bench", "pipeline", "--event-rate", "-5"], "--event-rate: must be a finite number"),
        (["bench", "pipeline", "--seconds", "nan"], "--seconds: must be a finite number"),
        (["bench", "pipeline", "--seconds", "-1"], "--seconds: must be a finite number"),
        (["bench", "pipeline", "--threads", "-3"], "--threads: must be a positive integer"),
        (["bench", "pipeline", "--bag", "/no/such/bag"], "--bag '/no/such/bag' does not exist"),
        (["bench", "pipeline", "--model", "/no/typo.safetensors"], "no such checkpoint file"),
        (["bench", "pipeline", "--param", "a=["], "not valid YAML"),
        (["replay", "in", "-o", "out", "--param", "rate_hz=[1"], "not valid YAML"),
        (["eval", "--model", "m", "--batch-size", "0"], "--batch-size: must be a positive"),
        (["eval", "--model", "m", "--limit", "-1"], "--limit: must be an integer >= 0"),
        (["eval", "--model", "m", "--threads", "-1"], "--threads: must be an integer >= 0"),
        (["demo", "--seconds", "0"], "--seconds: must be a finite number > 0"),
        (["demo", "--seconds", "inf"], "--seconds: must be a finite number > 0"),
    ],
)
def test_out_of_range_arguments_exit_2_with_one_line(argv, message, capsys, tmp_path) -> None:
    from facealign_ros.cli import main

    try:
        rc = main([x.replace("out", str(tmp_path / "out")) for x in argv])
    except SystemExit as exc:  # argparse refuses it
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing half-written
