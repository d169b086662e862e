"""The ROS-free pipeline on tiny generated bags and hand-made bad inputs (random-weight model)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facealign_ros.bag import BagReader, make_event_packet, msg_class
from facealign_ros.events import encode, make_events
from facealign_ros.face.pose import euler_to_matrix, mean_face_68, rotation_error_deg
from facealign_ros.face.preprocess import InputSpec
from facealign_ros.messages import header, image_to_msg
from facealign_ros.model import CMFA, lite_config, save_checkpoint
from facealign_ros.pipeline import (
    DROP_REASONS,
    ModelLoadError,
    Pipeline,
    PipelineConfig,
    load_model,
)
from facealign_ros.pipeline.config import MAX_SENSOR_SIDE

W, H = 346, 260
T0 = 1_700_000_000 * 10**9
SPEC = InputSpec(size=64, window_ms=20.0)


@pytest.fixture(scope="module")
def ckpt(random_lite_checkpoint: Path) -> Path:
    return random_lite_checkpoint


@pytest.fixture(scope="module")
def model(ckpt):
    return load_model(ckpt, "cpu", threads=1)


@pytest.fixture(scope="module")
def bag_msgs(synth_bag):
    with BagReader(synth_bag) as bag:
        topics = ["/event_camera/events", "/camera/image_raw", "/camera/camera_info"]
        return list(bag.messages(topics))


def make_pipe(model, **kw) -> Pipeline:
    cfg = PipelineConfig(**{"device": "cpu", "detect_threshold": 0.0, **kw})
    return Pipeline(cfg, model)


def run(pipe: Pipeline, msgs, flush: bool = True) -> list:
    out = []
    last = 0
    for topic, t, msg in msgs:
        last = t
        if topic.endswith("events"):
            pipe.on_events(msg, t)
        elif topic.endswith("image_raw"):
            pipe.on_image(msg, t)
        else:
            pipe.on_camera_info(msg)
        while (r := pipe.step(t)) is not None:
            out.append(r)
    while flush and (r := pipe.step(last, flush=True)) is not None:
        out.append(r)
    return out


def packet(t_us: np.ndarray, stamp: int, seq: int = 0, w: int = W, h: int = H, enc="evt3"):
    n = t_us.size
    rng = np.random.default_rng(seq)
    ev = make_events(
        t_us * 1000, rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n)
    )
    return make_event_packet(encode(ev, "evt3", w, h), w, h, enc, seq, 0, stamp)


def image(stamp: int, w: int = W, h: int = H, encoding: str = "rgb8"):
    msg = image_to_msg(msg_class, np.full((h, w, 3), 90, np.uint8), stamp)
    if encoding != "rgb8":
        msg.encoding = encoding
    return msg


# ---------------------------------------------------------------- modes on a generated bag


def test_fused_answers_every_image_at_its_stamp(model, bag_msgs):
    res = run(make_pipe(model, mode="fused"), bag_msgs)
    stamps = [int(t) for topic, t, m in bag_msgs if topic == "/camera/image_raw"]
    assert [r.stamp_ns for r in res] == stamps
    assert {r.mode for r in res} == {"fused"}
    r = res[-1]
    assert r.has_face and r.landmarks.shape == (70, 2) and r.confidence.shape == (70,)
    assert np.all((r.confidence >= 0) & (r.confidence <= 1))
    assert r.width == W and r.height == H and r.frame_id == "camera_optical_frame"


def test_events_mode_answers_on_the_grid(model, bag_msgs):
    pipe = make_pipe(model, mode="events", rate_hz=50.0)
    res = run(pipe, bag_msgs)
    assert len(res) >= 15
    assert all(r.stamp_ns % 20_000_000 == 0 for r in res)
    assert np.all(np.diff([r.stamp_ns for r in res]) > 0)
    assert "events" in {r.mode for r in res}  # before the first frame: events only
    assert pipe.stats.drops["stale"] == 0  # step() after every message: nothing skipped


def test_events_mode_reuses_the_rgb_features_of_a_frame(model, bag_msgs, monkeypatch):
    """Answers between two RGB frames keep the frame's crop and features while the box holds."""
    encoded, boxes = [], []
    real_features, real_align = model.aligner.rgb_features, model.align

    def features(im):
        encoded.append(1)
        return real_features(im)

    def align(bxs, *args, **kw):
        boxes.append((kw.get("rgb_key"), bxs[0]))
        return real_align(bxs, *args, **kw)

    monkeypatch.setattr(model.aligner, "rgb_features", features)
    monkeypatch.setattr(model, "align", align)
    counts = {}
    for tol in (0.1, 0.0):
        encoded.clear(), boxes.clear()
        pipe = make_pipe(model, mode="events", rate_hz=200.0, rgb_reuse_tolerance=tol)
        res = run(pipe, bag_msgs)
        fused = [r for r in res if r.mode == "fused" and r.has_face]
        keyed = [(k, b) for k, b in boxes if k is not None]
        assert len(fused) >= 10 and len(keyed) >= len(fused) - 1
        counts[tol] = len(encoded)
        # features are computed once per (frame, crop box): a frame's answers share its box
        # until the tracked box moves more than the tolerance
        assert len(encoded) == len(set(keyed))
        if tol > 0:
            assert len(set(keyed)) < len(keyed)
    assert counts[0.1] < counts[0.0]
    model.forget()


def test_warm_up_prepares_the_configured_warm_start(model):
    model.aligner.graphs.clear()
    make_pipe(model, warm_stages=1).warm_up()
    decodes = [k for k in model.aligner.graphs._graphs if k[0] == "decode"]
    assert len(decodes) == 6  # fused / events / RGB, cold and one-stage warm
    assert {k[3][2] for k in decodes} == {(0, 1), (1,)}  # stage indices: all, the finest


def test_rgb_mode_uses_no_events(model, bag_msgs):
    res = run(make_pipe(model, mode="rgb"), bag_msgs)
    assert res and {r.mode for r in res} == {"rgb"}
    assert all(r.debug is None for r in res)


def test_no_face_state_is_clean(model, bag_msgs):
    pipe = make_pipe(model, detect_threshold=1.0)  # nothing can pass
    res = run(pipe, bag_msgs)
    assert res and not any(r.has_face for r in res)
    for r in res:
        assert r.roi is None and r.pose is None and np.all(r.confidence == 0)
    assert pipe.stats.counters["no_face"] == len(res)
    assert pipe.stats.counters["detect_runs"] < len(res)  # searches are rate-limited


def test_lost_face_gets_a_new_id(model, bag_msgs):
    pipe = make_pipe(model, track_threshold=1.0, lost_after=2, detect_interval_ms=0.0)
    res = run(pipe, bag_msgs)
    ids = [r.face_id for r in res if r.has_face]
    assert len(set(ids)) >= 2
    assert pipe.stats.counters["lost"] >= 1


def test_keep_debug_and_smoothing(model, bag_msgs):
    from facealign_ros.pipeline.draw import render_result

    pipe = Pipeline(PipelineConfig(device="cpu", detect_threshold=0.0, smoothing=True), model,
                    keep_debug=True)  # fmt: skip
    res = run(pipe, bag_msgs[:400])
    assert res and res[-1].debug is not None and res[-1].debug.events is not None
    img = render_result(res[-1])
    assert img.shape == (H, 2 * W, 3) and img.dtype == np.uint8
    # a strongly distorted lens moves the drawn pose axes (landmarks and box stay as seen)
    last = next(r for r in reversed(res) if r.pose is not None)
    K = pipe.intrinsics((W, H))
    plain = render_result(last, K=K)
    bent = render_result(last, K=K, distortion=("plumb_bob", np.array([-0.6, 0.3, 0, 0, 0])))
    assert np.array_equal(plain, render_result(last, K=K, distortion=("plumb_bob", np.zeros(5))))
    assert not np.array_equal(plain, bent)


# ---------------------------------------------------------------- scheduling


def test_latest_only_drops_stale_images(model):
    pipe = make_pipe(model, mode="rgb")
    for k in range(3):
        assert pipe.on_image(image(T0 + k * 33_000_000), now_ns=0)
    r = pipe.step(0)
    assert r is not None and r.stamp_ns == T0 + 2 * 33_000_000
    assert pipe.step(0) is None
    assert pipe.stats.drops["stale"] == 2


def test_fused_image_waits_for_events_then_times_out(model):
    pipe = make_pipe(model, mode="fused", max_wait_ms=50.0)
    pipe.on_events(packet(np.arange(0, 5000, 50), T0), now_ns=T0)
    pipe.on_image(image(T0 + 10_000_000), now_ns=T0 + 10_000_000)
    assert pipe.step(T0 + 20_000_000) is None  # events end at 5 ms < 10 ms: waiting
    r = pipe.step(T0 + 70_000_000)  # waited 60 ms > max_wait
    assert r is not None and r.mode == "fused" and r.stamp_ns == T0 + 10_000_000


def test_try_step_is_non_blocking(model):
    pipe = make_pipe(model, mode="rgb")
    pipe.on_image(image(T0), now_ns=0)
    with pipe._work:  # another worker is busy
        assert pipe.try_step(0) is None
    assert pipe.try_step(0) is not None


# ---------------------------------------------------------------- bad input


def test_bad_packets_are_counted_not_raised(model):
    pipe = make_pipe(model)
    good = packet(np.arange(0, 1000, 10), T0)
    assert pipe.on_events(good, 0)
    rng = np.random.default_rng(0)
    bad = [
        make_event_packet(rng.integers(0, 256, 999, dtype=np.uint8), W, H, "evt3", 1, 0, T0 + 2),
        packet(np.arange(1000, 2000, 10), T0 + 3_000_000, w=640, h=480),
        make_event_packet(b"\x00" * 16, W, H, "evt4", 3, 0, T0 + 4_000_000),
        make_event_packet(b"\x00" * 16, 0, 0, "evt3", 4, 0, T0 + 5_000_000),
        object(),
    ]  # fmt: skip
    for msg in bad:
        pipe.on_events(msg, 0)  # never raises
    d = pipe.stats.drops
    assert d["packet_mismatch"] + d["bad_packet"] >= 4
    assert pipe.on_events(packet(np.arange(2000, 3000, 10), T0 + 6_000_000, seq=5), 0)


def test_bad_images_are_counted_not_raised(model):
    pipe = make_pipe(model, mode="rgb")
    bad_enc = image(T0, encoding="32FC1")
    short = image(T0 + 1)
    short.data = short.data[:100]
    for msg in (bad_enc, short, object()):
        pipe.on_image(msg, 0)
        assert pipe.step(0) is None
    assert pipe.stats.drops["bad_image"] == 3
    pipe2 = make_pipe(model, mode="fused")
    pipe2.on_events(packet(np.arange(0, 20000, 20), T0), 0)
    pipe2.on_image(image(T0 + 10_000_000, w=320, h=240), 0)
    r = pipe2.step(0, flush=True)
    assert r is not None and r.mode == "events"  # wrong-size RGB ignored, events still used
    assert pipe2.stats.drops["image_size"] == 1


def test_images_over_the_size_limit_are_counted_drops(model):
    pipe = make_pipe(model, mode="rgb")
    huge = image(T0, w=8, h=8)
    huge.width = 8192  # a claim alone, refused before any conversion (it cost 1.25 GB)
    assert pipe.on_image(huge, 0) is False
    wide = np.zeros((4, MAX_SENSOR_SIDE + 1, 3), np.uint8)  # a compressed frame, decoded
    ok, png = cv2.imencode(".png", wide)
    assert ok
    comp = msg_class("sensor_msgs/msg/CompressedImage")(
        header=header(msg_class, T0 + 1, "cam"), format="png", data=png.ravel()
    )
    assert pipe.on_image(comp, 0) is True
    assert pipe.step(0) is None
    assert pipe.stats.drops["bad_image"] == 2


def test_a_wrong_size_image_says_which_homography_would_register_it(model):
    said: list[str] = []
    cfg = PipelineConfig(device="cpu", detect_threshold=0.0)
    pipe = Pipeline(cfg, model, said.append)
    pipe.on_events(packet(np.arange(0, 20000, 20), T0), 0)
    pipe.on_image(image(T0 + 10_000_000, w=173, h=130), 0)  # half the sensor's resolution
    assert pipe.step(0, flush=True).mode == "events"
    (hint,) = [m for m in said if "image_size" in m or "homography" in m]
    assert "[2, 0, 0, 0, 2, 0, 0, 0, 1]" in hint
    scaled = Pipeline(cfg.replace(homography=(2, 0, 0, 0, 2, 0, 0, 0, 1)), model)
    scaled.on_events(packet(np.arange(0, 20000, 20), T0), 0)
    scaled.on_image(image(T0 + 10_000_000, w=173, h=130), 0)
    assert scaled.step(0, flush=True).mode == "fused"  # the hint's homography registers it


def test_time_backwards_and_bag_loop(model):
    pipe = make_pipe(model, mode="rgb")
    pipe.on_image(image(T0 + 100_000_000), 0)
    assert not pipe.on_image(image(T0 + 90_000_000), 0)  # 10 ms back: dropped
    assert pipe.stats.drops["time_backwards"] == 1
    assert pipe.on_image(image(T0 - 5 * 10**9), 0)  # 5 s back: a loop, state reset
    assert pipe.stats.counters["loops"] == 1
    r = pipe.step(0)
    assert r is not None and r.stamp_ns == T0 - 5 * 10**9


def test_unstamped_messages_are_counted_drops_not_answers_at_time_zero(model, caplog):
    # a driver that leaves header.stamp empty: its messages cannot be placed in time (events
    # mapped near 0 would never meet an image; an answer stamped 0 is "latest" to tf2)
    pipe = make_pipe(model, mode="fused")
    with caplog.at_level("WARNING"):
        for k in range(3):
            assert not pipe.on_events(packet(np.arange(k * 10_000, (k + 1) * 10_000, 50), 0, k), 0)
        assert not pipe.on_image(image(0), 0)
    assert pipe.stats.drops["unstamped"] == 4 and pipe.stats.counters["event_packets"] == 0
    assert pipe.step(0, flush=True) is None
    assert any("header stamp 0" in r.getMessage() for r in caplog.records)
    # a stamped stream afterwards works as usual
    assert pipe.on_events(packet(np.arange(0, 20000, 20), T0), 0)
    assert pipe.on_image(image(T0 + 10_000_000), 0)
    assert pipe.step(0, flush=True).mode == "fused"


def test_missing_rgb_falls_back_to_event_grid(model):
    pipe = make_pipe(model, mode="fused", rate_hz=100.0, rgb_timeout_ms=100.0)
    res = []
    for k in range(30):  # 300 ms of events, no image at all
        pipe.on_events(packet(np.arange(k * 10_000, (k + 1) * 10_000, 100), T0 + k * 10**7, k), 0)
        while (r := pipe.step(0)) is not None:
            res.append(r)
    assert res and {r.mode for r in res} == {"events"}
    assert pipe.stats.drops["missing_rgb"] == len(res)


def test_missing_events_answers_from_rgb(model):
    pipe = make_pipe(model, mode="fused")
    pipe.on_image(image(T0), 0)
    r = pipe.step(0)
    assert r is not None and r.mode == "rgb"
    assert pipe.stats.drops["missing_events"] == 1


def camera_info(K, w=W, h=H, model="plumb_bob", d=(0.0,) * 5):
    info = msg_class("sensor_msgs/msg/CameraInfo")
    roi = msg_class("sensor_msgs/msg/RegionOfInterest")
    return info(header=header(msg_class, T0, "cam"), height=h, width=w, distortion_model=model,
                d=np.asarray(d, float), k=np.asarray(K, float).ravel(), r=np.eye(3).ravel(),
                p=np.zeros(12), binning_x=0, binning_y=0,
                roi=roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))  # fmt: skip


def test_camera_info_intrinsics_and_distortion_feed_head_pose(model):
    K = np.array([[260.0, 0, 170], [0, 260, 128], [0, 0, 1]])
    pipe = make_pipe(model)
    bad = [
        camera_info(np.zeros(9)),
        camera_info(K, d=[np.nan] * 5),
        camera_info(K, d=[0.1] * 3),
    ]
    assert not any(pipe.on_camera_info(m) for m in bad)
    assert pipe.stats.drops["bad_camera_info"] == 3
    # a model we cannot undistort keeps its camera matrix, without the distortion
    assert pipe.on_camera_info(camera_info(K * [[2], [2], [1]], 2 * W, 2 * H, "radtan", [0.1] * 4))
    assert np.allclose(pipe.intrinsics((W, H)), K) and pipe.face.camera[3] is None
    assert pipe.stats.counters["camera_info_distortion_ignored"] == 1
    assert pipe.on_camera_info(camera_info(K * [[2], [2], [1]], w=2 * W, h=2 * H))
    assert np.allclose(pipe.intrinsics((W, H)), K)  # scaled to the sensor
    # landmarks seen through a strongly distorted lens: PnP must undistort them first
    R, t = euler_to_matrix(*np.radians([25.0, -10.0, 5.0])), np.array([0.12, 0.04, 0.45])
    for dist_model, d in (("plumb_bob", [-0.3, 0.1, 0.0, 0.0, 0.0]),
                          ("equidistant", [0.05, -0.02, 0.0, 0.0])):  # fmt: skip
        assert pipe.on_camera_info(camera_info(K, model=dist_model, d=d))
        K_at, dist_at = pipe.camera_model((W, H))
        assert np.allclose(K_at, K) and dist_at[0] == dist_model and np.allclose(dist_at[1], d)
        rvec = cv2.Rodrigues(R)[0]
        project = cv2.fisheye.projectPoints if dist_model == "equidistant" else cv2.projectPoints
        obj = mean_face_68().reshape(-1, 1, 3)
        pts = project(obj, rvec, t, K, np.asarray(d))[0].reshape(-1, 2)
        pts70 = np.vstack([pts, pts[[36, 42]]])
        pose = pipe.face._pose(pts70, np.ones(70), (W, H), None)
        assert pose is not None and rotation_error_deg(pose.rotation, R) < 0.05, dist_model
        assert np.allclose(pose.translation, t, atol=1e-3)


def test_event_flood_windows_are_bounded(model):
    pipe = make_pipe(model, mode="events", rate_hz=100.0, max_window_events=2000)
    pipe.on_events(packet(np.linspace(0, 20_000, 50_000).astype(np.int64), T0), 0)
    r = pipe.step(0)
    assert r is not None
    assert pipe.stats.counters["windows_truncated"] == 1


def test_fuzz_never_raises(model):
    rng = np.random.default_rng(1)
    pipe = make_pipe(model, mode="fused", max_wait_ms=0.0)
    for k in range(40):
        n = int(rng.integers(0, 400))
        p = make_event_packet(rng.integers(0, 256, n, dtype=np.uint8), W, H, "evt3", k, 0,
                              T0 + int(rng.integers(-10**9, 10**9)))  # fmt: skip
        pipe.on_events(p, 0)
        if k % 5 == 0:
            img = image(T0 + int(rng.integers(-(10**9), 10**9)))
            img.width = int(rng.integers(0, 400))
            pipe.on_image(img, 0)
        pipe.step(0)
    snap = pipe.snapshot()
    assert set(snap["drops"]) == set(DROP_REASONS)


# ---------------------------------------------------------------- model loading


def test_model_load_errors_are_clear(tmp_path, ckpt):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors", "cpu")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="bad.safetensors"):
        load_model(bad, "cpu")
    torch.manual_seed(0)
    cfg = lite_config(num_points=70, input_size=64, event_channels=SPEC.event_channels)
    nospec = tmp_path / "nospec.safetensors"
    save_checkpoint(nospec, CMFA(cfg), landmark_scheme="rep155_70", representations=["x"])
    with pytest.raises(ModelLoadError, match="InputSpec"):
        load_model(nospec, "cpu")
    spec = {**SPEC.to_dict(), "window_ms": float("inf")}  # would overflow every answer
    inf = tmp_path / "inf.safetensors"
    save_checkpoint(inf, CMFA(cfg), landmark_scheme="rep155_70", representations=["x"],
                    preprocessing=spec)  # fmt: skip
    with pytest.raises(ModelLoadError, match="window_ms must be a finite number"):
        load_model(inf, "cpu")
    if not torch.cuda.is_available():  # a CPU-only torch: a clear refusal, not an assertion
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_model(ckpt, "cuda")


def test_config_validation():
    with pytest.raises(ValueError, match="mode"):
        PipelineConfig(mode="dark")
    with pytest.raises(ValueError, match="rate_hz"):
        PipelineConfig(rate_hz=0.0)
    with pytest.raises(ValueError, match="unknown"):
        PipelineConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError, match="singular"):
        PipelineConfig(homography=(0.0,) * 9)
    cfg = PipelineConfig(mode="events")
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.model_path.name == "cmfa_lite.safetensors"
    assert PipelineConfig(model=Path("m.safetensors"), rate_hz=30).model == "m.safetensors"
    cfg = PipelineConfig(lost_after=np.int64(3), redetect_looks=np.int32(2), rate_hz=np.float32(50))
    assert type(cfg.lost_after) is int and type(cfg.rate_hz) is float  # JSON-able
    with pytest.raises(ValueError, match="homography"):
        PipelineConfig(homography="100010001")


@pytest.mark.parametrize(
    "bad",
    [{"rate_hz": None}, {"lost_after": 2.5}, {"detect_candidates": True}, {"smoothing": "no"},
     {"model": None}, {"device": "cuda:x"}, {"homography": None}, {"sensor_width": 640}],
)  # fmt: skip
def test_config_refuses_wrong_types_with_the_field_named(bad):
    # e.g. `replay --param rate_hz=null` or `detect_candidates=3.7`: a ValueError naming the field
    # (replay and the node report those), never a TypeError nor a value that fails later
    (name,) = bad
    with pytest.raises(ValueError, match=f"invalid PipelineConfig: {name}"):
        PipelineConfig.from_dict(bad)


def test_warm_start_is_re_anchored_by_cold_passes(model, bag_msgs, monkeypatch):
    calls = []
    real = model.align

    def spy(boxes, events, rgb, size, t, init_points=None, stages=None, rgb_key=None):
        calls.append((init_points is not None, stages))
        return real(boxes, events, rgb, size, t, init_points, stages, rgb_key)

    monkeypatch.setattr(model, "align", spy)
    run(make_pipe(model, warm_start=True, warm_anchor_every=2, track_threshold=0.0), bag_msgs)
    tracked = calls[2:]  # after the search (candidates) and its refinement
    warm = [c for c in tracked if c[0]]
    cold = [c for c in tracked if not c[0]]
    assert warm and cold and all(s == 1 for _, s in warm) and all(s is None for _, s in cold)
    assert abs(len(warm) - len(cold)) <= 1  # every second tracked frame is a cold pass
    calls.clear()
    run(make_pipe(model, warm_start=False, track_threshold=0.0), bag_msgs)
    assert not any(init for init, _ in calls)
