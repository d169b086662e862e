"""SSMER windows centred on the face detector's box in the RGB frames (``box_source: detector``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facealign_ros.face.crop import box_from_landmarks
from facealign_ros.face.detector import BlazeFaceDetector, FaceDetection
from facealign_ros.pipeline.detection import box_from_detection
from training.data import load_bag_arrays
from training.ssmer.config import load_ssmer_config
from training.ssmer.face_boxes import DetectorBoxes
from training.ssmer.sources import find_sources, stream_windows

ROOT = Path(__file__).resolve().parents[1]
SSMER_YAML = ROOT / "training" / "configs" / "ssmer_lite.yaml"


class FixedDetector:
    """Finds one face at ``box`` in every frame; counts its calls and the frame shapes."""

    def __init__(self, box: tuple[float, float, float, float] | None) -> None:
        self.box, self.shapes = box, []

    def detect(self, rgb: np.ndarray, windows=None) -> list[FaceDetection]:
        self.shapes.append(rgb.shape)
        return [] if self.box is None else [FaceDetection(self.box, 0.9, np.zeros((6, 2)))]


def test_box_at_takes_the_latest_detection_up_to_its_age_limit() -> None:
    boxes = DetectorBoxes(FixedDetector((10, 20, 50, 60)), 1.25, max_age_ms=50)
    frame = np.zeros((8, 8, 3), np.uint8)
    assert boxes.box_at(0) is None
    first = boxes.observe(0, frame)
    boxes.detector.box = (30, 20, 70, 60)
    second = boxes.observe(33_000_000, frame)
    assert first is not None and second is not None and second.cx == first.cx + 20
    expected = box_from_detection(FaceDetection((10, 20, 50, 60), 0.9, np.zeros((6, 2))), 1.25)
    assert (first.cx, first.cy, first.side) == (expected.cx, expected.cy, expected.side)
    assert boxes.box_at(-1) is None  # before any detection
    assert boxes.box_at(20_000_000) == first
    assert boxes.box_at(33_000_000) == second
    assert boxes.box_at(83_000_000) == second  # 50 ms old: still used
    assert boxes.box_at(83_000_001) is None  # older: the caller falls back to activity
    boxes.detector.box = None
    assert boxes.observe(90_000_000, frame) is None
    assert boxes.box_at(90_000_000) is None  # the last frame had no face
    boxes.reset()
    assert boxes.box_at(40_000_000) is None


def test_windows_take_the_detector_box_of_the_frames(synth_bag: Path) -> None:
    (src,), _ = find_sources([synth_bag])
    assert src.image_topic == "/camera/image_raw"
    det = FixedDetector((100, 80, 180, 160))
    boxes = DetectorBoxes(det, 1.25)
    wins = list(stream_windows(src, 30_000_000, 20_000_000, face_boxes=boxes))
    assert wins and det.shapes and set(det.shapes) == {(260, 346, 3)}
    fixed = box_from_detection(FaceDetection((100, 80, 180, 160), 0.9, np.zeros((6, 2))), 1.25)
    by_source = {w.box_source for w in wins}
    assert by_source <= {"detector", "activity"}
    detected = [w for w in wins if w.box_source == "detector"]
    assert len(detected) >= len(wins) - 2  # a window before the first frame may have none
    for w in detected:
        assert (w.box.cx, w.box.cy, w.box.side) == (fixed.cx, fixed.cy, fixed.side)
        half = 0.5 * 2.3 * w.box.side  # events kept around the box (stream_windows' margin)
        assert np.all(np.abs(w.events["x"] - w.box.cx) <= half)
    # the same windows without a detector: activity boxes, same events times
    plain = list(stream_windows(src, 30_000_000, 20_000_000))
    assert [w.t_end for w in plain] == [w.t_end for w in wins]
    assert {w.box_source for w in plain} == {"activity"}


def test_frames_of_another_size_are_not_used(synth_bag: Path) -> None:
    from dataclasses import replace

    from facealign_ros.bag import msg_class
    from facealign_ros.messages import image_to_msg
    from training.ssmer.sources import _observe_frame

    (src,), _ = find_sources([synth_bag])
    det = FixedDetector((100, 80, 180, 160))
    boxes = DetectorBoxes(det, 1.25)
    frame = np.zeros((src.height, src.width + 2, 3), np.uint8)  # not registered to the sensor
    _observe_frame(boxes, image_to_msg(msg_class, frame, 5), src)
    assert not det.shapes and boxes.box_at(5) is None
    odd = image_to_msg(msg_class, frame[:, 2:], 5)
    odd.encoding = "32FC1"  # an encoding the runtime does not decode: skipped, no crash
    _observe_frame(boxes, odd, src)
    assert not det.shapes and boxes.box_at(5) is None
    _observe_frame(boxes, image_to_msg(msg_class, frame[:, 2:], 5), src)
    assert det.shapes == [(src.height, src.width, 3)] and boxes.box_at(5) is not None
    noimage = replace(src, image_topic="")
    wins = list(stream_windows(noimage, 30_000_000, 20_000_000, face_boxes=boxes))
    assert wins and len(det.shapes) == 1 and {w.box_source for w in wins} == {"activity"}


def test_blazeface_boxes_sit_on_the_face(synth_bag: Path, blazeface_model: Path) -> None:
    (src,), _ = find_sources([synth_bag])
    boxes = DetectorBoxes(BlazeFaceDetector(blazeface_model), 1.25)
    wins = list(stream_windows(src, 30_000_000, 20_000_000, face_boxes=boxes))
    plain = {w.t_end: w for w in stream_windows(src, 30_000_000, 20_000_000)}
    bag = load_bag_arrays(synth_bag)
    clock_offset = int(bag.events["t"][0]) - int(np.min(wins[0].events["t"]))  # sensor -> ROS
    det_err, act_err = [], []
    for w in wins:
        if w.box_source != "detector":
            continue
        r = int(np.argmin(np.abs(bag.gt_stamps - (w.t_end + clock_offset))))
        gt = box_from_landmarks(np.asarray(bag.gt_points[r], float), bag.gt_visible[r], 1.25)
        det_err.append(np.hypot(w.box.cx - gt.cx, w.box.cy - gt.cy) / gt.side)
        a = plain[w.t_end].box
        act_err.append(np.hypot(a.cx - gt.cx, a.cy - gt.cy) / gt.side)
    assert len(det_err) >= 0.8 * len(wins)
    assert np.median(det_err) < 0.12  # measured 0.036 median on 20 training bags
    assert np.median(det_err) < np.median(act_err)


def test_config_and_cli_reject_a_bad_box_source_or_a_missing_detector(
    synth_bag: Path, tmp_path: Path
) -> None:
    from facealign_ros.cli import main
    from training.trainer.config import ConfigError

    with pytest.raises(ConfigError, match="box_source must be one of"):
        load_ssmer_config(SSMER_YAML, ["data.box_source=gt"])
    missing = tmp_path / "nope.tflite"
    argv = ["pretrain", "--bags", str(synth_bag), "--config", str(SSMER_YAML),
            "data.box_source=detector", f"data.detector_model={missing}",
            f"run.out_dir={tmp_path / 'out'}", "run.progress=false"]  # fmt: skip
    assert main(argv) == 2
    assert not (tmp_path / "out" / "encoder.safetensors").exists()


def test_cli_pretrains_on_detector_boxes_through_loader_workers(
    synth_bag: Path, blazeface_model: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    from facealign_ros.cli import main

    out = tmp_path / "ssmer"
    argv = ["pretrain", "--bags", str(synth_bag), "--config", str(SSMER_YAML),
            "data.box_source=detector", f"data.detector_model={blazeface_model}",
            "data.input.size=32", "data.batch_size=4", "data.num_workers=1",
            "data.shuffle_buffer=4", "model.overrides.backbone_width=4",
            "model.overrides.feature_dim=16", "model.proj_dim=16", "model.pred_dim=8",
            "run.tensorboard=false", "run.device=cpu", "schedule.steps=2",
            "schedule.warmup_steps=1", "run.progress=false", f"run.out_dir={out}"]  # fmt: skip
    assert main(argv) == 0
    assert (out / "encoder.safetensors").is_file()


def test_interleaved_recordings_keep_their_own_detections(
    synth_bag: Path, tmp_path: Path, monkeypatch
) -> None:
    # A shard reads several recordings at once; synthetic ones share ROS times, so one set of
    # detections for all would hand one recording's face box to another's windows.
    import shutil

    from facealign_ros.face.preprocess import InputSpec
    from training.ssmer import stream as stream_mod
    from training.ssmer.stream import WindowStream
    from training.ssmer.views import ViewAugment

    other = tmp_path / "copy"
    shutil.copytree(synth_bag, other)
    sources, _ = find_sources([synth_bag, other])
    loads: list[int] = []

    def fake_load(model_path: str = "") -> FixedDetector:
        loads.append(1)
        return FixedDetector((100, 80, 180, 160))

    seen: dict[str, set[int]] = {}
    real = stream_mod.stream_windows

    def spy(src, *args, face_boxes=None, **kw):
        seen.setdefault(src.path.name, set()).add(id(face_boxes))
        yield from real(src, *args, face_boxes=face_boxes, **kw)

    monkeypatch.setattr(stream_mod, "BlazeFaceDetector", fake_load)
    monkeypatch.setattr(stream_mod, "stream_windows", spy)
    ws = WindowStream(sources, InputSpec(size=32), ("event_frame", "voxel"), ViewAugment(),
                      seed=0, batch_size=2, interleave=2, shuffle_buffer=2,
                      box_source="detector")  # fmt: skip
    it = iter(ws)
    for _ in range(8):
        next(it)
    assert set(seen) == {synth_bag.name, "copy"}
    ids = [i for group in seen.values() for i in group]
    assert len(ids) == len(set(ids)), "each recording must have its own DetectorBoxes"
    assert loads == [1]  # one detector per process
    import pickle

    assert pickle.loads(pickle.dumps(ws))._detector is None  # workers load their own


def test_box_bench_compares_both_sources(
    synth_bag: Path, blazeface_model: Path, monkeypatch, capsys
) -> None:
    import json

    from facealign_ros.face import detector as fd
    from training.bench import activity_box as bench

    monkeypatch.setattr(fd, "default_detector_path", lambda root=None: blazeface_model)
    assert bench.main(["--bags", str(synth_bag), "--every", "2", "--detector"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"activity", "detector"}
    assert set(out["detector"]) == {"all", "low"}  # the fixture bag is a low-light one
    det, act = out["detector"]["all"], out["activity"]["all"]
    assert act["found"] == 1.0 and det["windows"] >= 0.8 * act["windows"] > 0
    assert det["centre_error_sides"]["median"] < act["centre_error_sides"]["median"]
    assert 0.8 < det["side_ratio"]["median"] < 1.25


def test_a_compressed_image_topic_gives_detector_boxes_too(compressed_synth_bag: Path) -> None:
    (src,), _ = find_sources([compressed_synth_bag])
    assert src.image_topic == "/camera/image_raw/compressed"
    boxes = DetectorBoxes(FixedDetector((100, 80, 180, 160)), 1.25)
    wins = list(stream_windows(src, 30_000_000, 20_000_000, face_boxes=boxes))
    assert wins and boxes.detector.shapes[0] == (260, 346, 3)  # the decoded frames
