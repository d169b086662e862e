"""``python -m training.bench.pipeline``: both scenarios end to end, and the mirrored face loop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

KEYS = (
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "compute_p50_ms",
    "peak_rss_mb",
    "setup_peak_rss_mb",
    "phases_peak_rss_mb",
    "events_mode_hz",
    "events_mode_compute_p50_ms",
    "events_only_hz",
    "event_rate_mev_s",
)


@pytest.fixture(scope="module")
def face_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 0.4 s synthetic bag like the benchmark's own (normal light, slow motion, seed 0).

    The face search finds its face in every frame even under 5 Mev/s of background events,
    which the low-light ``synth_bag`` does not (about 1 frame in 9).
    """
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    out = tmp_path_factory.mktemp("bags") / "synth_normal"
    write_synth_bag(out, SceneConfig(seed=0, seconds=0.4, light="normal", motion="slow"))
    return out


BENCH = ("-m", "training.bench.pipeline", "--json")


def _check_figures(result: dict) -> None:
    for key in KEYS:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert 0 <= result["dropped_fraction"] <= 1
    assert 0 <= result["events_mode_dropped_fraction"] <= 1
    assert result["results"] > 0 and result["images"] > 0


def test_face_scenario_tracks_the_face(face_bag: Path, json_command) -> None:
    result = json_command(*BENCH, "--bag", str(face_bag), "--seconds", "1")
    _check_figures(result)
    assert result["scenario"] == "face" and result["recording"] == str(face_bag)
    assert result["faces"] > 0 and 0 < result["face_share"] <= 1
    assert result["events_mode_faces"] > 0
    assert 0 < result["face_confidence_p50"] <= 1
    assert isinstance(result["nme"], float) and result["nme"] >= 0
    assert result["metrics"]["count"] > 0 and result["metrics"]["coverage"] > 0
    assert result["event_rate_mev_s"] == pytest.approx(5.0, rel=0.05)
    assert 0 < result["face_event_rate_mev_s"] < result["event_rate_mev_s"]


def test_search_scenario_reports_the_worst_case(json_command) -> None:
    result = json_command(*BENCH, "--scenario", "search", "--seconds", "0.5", "--event-rate", "1e6",
                          "--param", "face_detector=grid")  # fmt: skip
    _check_figures(result)
    assert result["scenario"] == "search" and result["face_detector"] == "grid"
    assert result["params"] == {"face_detector": "grid"} and result["detector_runs"] == 0
    assert result["nme"] is None and result["metrics"] is None
    assert result["detect_runs"] > 0
    assert result["event_rate_mev_s"] == pytest.approx(1.0)


def test_rejects_bad_arguments() -> None:
    cmd = [sys.executable, "-m", "training.bench.pipeline", "--seconds", "0"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "--seconds must be a finite number > 0" in res.stderr
    cmd = [sys.executable, "-m", "facealign_ros.cli", "bench", "pipeline", "--param", "nokey"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "KEY=VALUE" in res.stderr


def test_mirror_loop_is_seamless(face_bag: Path) -> None:
    from facealign_ros.messages import stamp_ns
    from training.bench.pipeline_inputs import FIRST_FRAME, IMAGE, face_stream, mirror_loop
    from training.data import load_bag_arrays

    arrays = load_bag_arrays(face_bag)
    loop = mirror_loop(arrays)
    n = len(arrays.frame_stamps) - FIRST_FRAME  # frames forward; n - 2 more backward
    assert loop.frames.shape[0] == 2 * n - 2 and loop.frame_t[0] == 0
    steps = np.diff(np.r_[loop.frame_t, loop.period_ns])  # across the wrap too
    assert np.all(np.abs(steps - 1e9 / 30) < 1e6)
    np.testing.assert_array_equal(loop.frames[n], arrays.frames[-2])  # the way back
    t = loop.events["t"]
    assert np.all(np.diff(t) >= 0) and t[0] >= 0 and t[-1] < loop.period_ns
    half = loop.period_ns // 2
    fwd, back = loop.events[t < half], loop.events[t >= half]
    assert abs(fwd.size - back.size) < 0.05 * fwd.size
    assert np.mean(fwd["p"]) == pytest.approx(1 - np.mean(back["p"]), abs=0.05)  # flipped
    s = face_stream(loop, 2 * loop.period_ns / 1e9, 1e6, seed=1)  # two cycles
    ns = np.array([stamp_ns(m) for _, kind, m in s["images"] if kind == IMAGE])
    assert np.all(np.diff(ns) > 0.9e9 / 30) and len(ns) == 2 * loop.frames.shape[0]
    assert all(s["gt"].find(int(x)) is not None for x in ns)
    feed = [t for t, _, _ in s["packets"]]
    assert feed == sorted(feed) and s["event_rate"] == pytest.approx(1e6, rel=0.05)


def test_face_stream_keeps_the_recording_sensor_size(face_bag: Path) -> None:
    """A 1280x720 recording's packets say 1280x720 and hold its events (not 346x260)."""
    import dataclasses

    from facealign_ros.events import Decoder
    from training.bench.pipeline_inputs import face_stream, mirror_loop
    from training.data import load_bag_arrays

    loop = mirror_loop(load_bag_arrays(face_bag))
    ev = loop.events.copy()
    ev["x"] = ev["x"] * 3 + 200  # the same motion at x up to ~1240, y up to ~720
    ev["y"] = np.minimum(ev["y"].astype(np.int64) * 2 + 150, 719)
    hd = dataclasses.replace(loop, events=ev, size=(1280, 720))
    s = face_stream(hd, 0.05, 2e6, seed=2)
    dec = Decoder("evt3", 1280, 720)
    got = [dec.decode(m.events) for _, _, m in s["packets"]]
    assert {(m.width, m.height) for _, _, m in s["packets"]} == {(1280, 720)}
    xs = np.concatenate([g["x"] for g in got])
    assert xs.max() > 346 and dec.stats.dropped_out_of_range == 0
