"""End to end: `facealign synth` and `facealign bench synth` as a user runs them."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from facealign_ros.bag import BagReader
from training.synth.bagout import TOPIC_META

CLI = [sys.executable, "-m", "facealign_ros.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, check=False)


def test_synth_writes_a_bag_and_refuses_bad_arguments(tmp_path: Path) -> None:
    out = tmp_path / "dark_fast"
    res = run("synth", "--out", str(out), "--seconds", "0.3", "--seed", "4", "--light", "dark",
              "--motion", "fast", "--storage", "sqlite3", "--rgb-camera", "small-pixel",
              "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout)
    assert stats["frames"] == 9 and stats["events"] > 0
    with BagReader(out) as bag:
        topics = bag.topics
        meta = json.loads(next(iter(bag.messages(TOPIC_META)))[2].data)
    assert meta["sensor"]["rgb"]["sensitivity_e_per_s"] == 1.5e5  # the small-pixel camera
    assert topics["/camera/image_raw"].count == 9
    assert topics["/facealign/gt/landmarks_hf"].count >= 290
    assert list(out.glob("*.db3"))
    # bad arguments: clear errors, nothing left behind
    bad = run("synth", "--out", str(tmp_path / "neg"), "--seconds", "-1")
    assert bad.returncode == 2 and "seconds" in bad.stderr
    assert not (tmp_path / "neg").exists()
    light = run("synth", "--out", str(tmp_path / "l"), "--seconds", "0.1", "--light", "dusk")
    assert light.returncode == 2 and "dusk" in light.stderr and not (tmp_path / "l").exists()
    again = run("synth", "--out", str(out), "--seconds", "0.1")
    assert again.returncode == 1 and "exists" in again.stderr


@pytest.mark.parametrize(
    ("arg", "value", "message"),
    [
        ("--seconds", "inf", "seconds must be positive and finite"),
        ("--fps", "1e-6", "fps must be in [1, 1000]"),  # a 10^6 s frame interval hung
        ("--flicker-hz", "nan", "flicker_hz must be finite"),
        ("--flicker-hz", "inf", "flicker_hz must be finite"),
        ("--max-event-rate", "nan", "--max-event-rate must be finite"),
        ("--max-event-rate", "inf", "--max-event-rate must be finite"),
    ],
)
def test_synth_refuses_non_finite_and_tiny_values(tmp_path: Path, arg, value, message) -> None:
    from training.synth.cli import add_synth_parser, run_synth

    parser = argparse.ArgumentParser()
    add_synth_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", "--out", str(tmp_path / "x"), "--seconds", "0.1",
                              arg, value])  # fmt: skip
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert run_synth(args) == 2
    assert message in err.getvalue() and not (tmp_path / "x").exists()


def test_synth_no_face_writes_the_scene_without_ground_truth(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    res = run("synth", "--out", str(out), "--seconds", "0.2", "--seed", "4", "--no-face",
              "--workers", "0", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["frames"] == 6
    with BagReader(out) as bag:
        topics = bag.topics
        meta = json.loads(next(iter(bag.messages(TOPIC_META)))[2].data)
    assert topics["/camera/image_raw"].count == 6 and topics["/event_camera/events"].count > 0
    assert not any(t.startswith("/facealign/gt") for t in topics)
    assert meta["scene"]["face"] is False


def test_bench_synth_json() -> None:
    res = run("bench", "synth", "--seconds", "0.3", "--workers", "0", "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert len(result["runs"]) == 2  # slow and fast motion
    assert all(r["realtime_factor"] > 0 and r["frames"] == 9 for r in result["runs"])
    assert result["dataset"]["samples_per_s"] > 0 and result["dataset"]["samples"] >= 15


def test_make_set_plan_names_seeds_and_balances_each_split() -> None:
    from training.synth.make_set import plan

    names = [n for n, *_ in plan("train", 3, first=36)]
    assert names == ["train_1036_low_fast", "train_1037_dark_fast", "train_1038_normal_slow"]
    assert plan("test", 2) == [("test_950000_dark_slow", 950_000, "dark", "slow"),
                               ("test_950001_normal_fast", 950_001, "normal", "fast")]  # fmt: skip
    # --first continues a set: its bags are exactly the tail of the longer plan
    assert plan("val", 4, first=2) == plan("val", 6)[2:]
    conditions = {(light, motion) for *_, light, motion in plan("train", 6, first=7)}
    assert len(conditions) == 6  # six consecutive seeds cover every light x motion
    with pytest.raises(ValueError, match="first"):
        plan("train", 1, first=-1)


def test_make_set_records_with_the_chosen_rgb_camera(tmp_path: Path, monkeypatch) -> None:
    import training.synth.bagout as bagout
    from training.synth import make_set
    from training.synth.camera import rgb_camera

    seen = []

    def fake_write(path, cfg, sensor=None, workers=0):
        seen.append((Path(path).name, sensor.rgb))
        return {"frames": 0, "events": 0}

    monkeypatch.setattr(bagout, "write_synth_bag", fake_write)
    argv = ["--out", str(tmp_path), "--train", "1", "--val", "0", "--seconds", "0.1"]
    assert make_set.main([*argv, "--rgb-camera", "small-pixel"]) == 0
    assert make_set.main([*argv, "--first", "1"]) == 0
    assert seen == [("train_1000_low_fast", rgb_camera("small-pixel")),
                    ("train_1001_dark_fast", rgb_camera("large-pixel"))]  # fmt: skip


@pytest.mark.parametrize("workers", ["0", "1"])
def test_missing_head_assets_are_a_clear_error_not_a_hang(tmp_path: Path, workers: str) -> None:
    """No network and no sdist: an error naming the variable, in this process or a render worker.

    (A render worker's failing initializer used to make the pool restart workers forever.)
    """
    env = dict(os.environ, FACEALIGN_CACHE=str(tmp_path / "cache"),
               FACEALIGN_MENPO3D_SDIST=str(tmp_path / "missing.tar.gz"))  # fmt: skip
    res = subprocess.run(
        [*CLI, "synth", "--out", str(tmp_path / "bag"), "--seconds", "0.2", "--head", "james",
         "--workers", workers],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert "FACEALIGN_MENPO3D_SDIST" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "bag").exists()
