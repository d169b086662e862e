"""The shipped weights and `facealign demo` end to end (the README's main job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

from facealign_ros.bag import BagReader
from facealign_ros.face.preprocess import InputSpec
from facealign_ros.model import read_metadata
from facealign_ros.pipeline.config import PipelineConfig

WEIGHTS = Path(__file__).resolve().parents[1] / "facealign_ros" / "weights"


def test_shipped_weights_carry_their_recipe() -> None:
    path = WEIGHTS / "cmfa_lite.safetensors"
    assert path.is_file() and path.stat().st_size < 8 * 2**20
    meta = read_metadata(path)
    assert meta.landmark_scheme == "rep155_70"
    assert "facealign train" in meta.training_command or "training.train" in meta.training_command
    spec = InputSpec.from_dict(meta.preprocessing)
    assert spec.event_channels == meta.config.event_channels
    assert {"val_nme", "val_nme_event", "val_nme_rgb"} <= set(meta.metrics)
    assert PipelineConfig().model == ""  # the default means these weights


def test_demo_end_to_end(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "facealign_ros.cli", "demo", "--light", "dark", "--seconds",
           "0.5", "--rgb-camera", "small-pixel", "-o", str(tmp_path), "--json"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    video = Path(summary["video"])
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == summary["results"] == 15
    cap.release()
    metrics = json.loads(Path(summary["metrics_file"]).read_text())
    assert {"nme", "fr10", "auc10"} <= set(metrics)
    with BagReader(summary["output"]) as bag:
        assert bag.topics["/humans/faces/tracked"].count == 15
    with BagReader(summary["input_bag"]) as bag:  # recorded with the small-pixel RGB camera
        meta = json.loads(next(iter(bag.messages("/facealign/synth/metadata")))[2].data)
    assert meta["sensor"]["rgb"]["sensitivity_e_per_s"] == 1.5e5


def test_shipped_weights_answer_no_face_on_an_empty_seat(tmp_path: Path) -> None:
    """The same scenes with and without their person: faces answered only where one is."""
    import dataclasses

    from training.replay import replay
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    cfg = PipelineConfig(device="cpu", torch_threads=1, face_detector="grid")
    rates = {}
    for seed, light in ((950001, "normal"), (950002, "low")):
        scene = SceneConfig(seed=seed, seconds=1.0, light=light, motion="fast")
        for face in (True, False):
            bag = tmp_path / f"{seed}_{face}"
            write_synth_bag(bag, dataclasses.replace(scene, face=face))
            summary = replay(bag, tmp_path / f"out_{seed}_{face}", cfg)
            assert summary["results"] == 30
            rates[seed, face] = summary["face_rate"]
    assert all(rates[s, True] >= 0.9 for s in (950001, 950002)), rates
    assert all(rates[s, False] <= 0.1 for s in (950001, 950002)), rates
