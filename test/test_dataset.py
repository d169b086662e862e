"""Training data from ground-truth bags: decoding, caching, samples, augmentation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from facealign_ros.events import EVENT_DTYPE
from facealign_ros.face.landmarks import REP155_70, flip_normalized
from facealign_ros.face.preprocess import InputSpec
from training.data import (
    SAMPLE_KEYS,
    AugmentConfig,
    BagWindowDataset,
    build_dataset,
    load_bag_arrays,
)

NO_AUG = AugmentConfig(enabled=False)
FLIP_ONLY = AugmentConfig(
    box_scale_jitter=0, box_shift=0, rotation_deg=0, flip_prob=1.0, event_drop_max=0,
    event_noise_max=0, rgb_gain=1.0, rgb_gamma=1.0, rgb_noise_max=0, rgb_blur_prob=0,
    rgb_white_balance=0, rgb_saturation=0, rgb_gray_prob=0,
)  # fmt: skip


def test_rgb_colour_augmentation() -> None:
    from training.data.dataset import _augment_rgb

    rgb = np.random.default_rng(0).uniform(0.1, 0.9, (3, 8, 8)).astype(np.float32)
    ident = np.asarray(_augment_rgb(rgb, np.random.default_rng(1), FLIP_ONLY))
    np.testing.assert_allclose(ident, rgb, atol=1e-6)
    gray = _augment_rgb(rgb, np.random.default_rng(1), replace(FLIP_ONLY, rgb_gray_prob=1.0))
    np.testing.assert_allclose(gray, np.broadcast_to(rgb.mean(0), rgb.shape), atol=1e-6)
    sat = replace(FLIP_ONLY, rgb_saturation=0.4, rgb_white_balance=0.1)
    outs = [_augment_rgb(rgb, np.random.default_rng(s), sat) for s in range(20)]
    spread = [float(np.std(o - o.mean(0))) / float(np.std(rgb - rgb.mean(0))) for o in outs]
    assert 0.55 < min(spread) < 0.95 and 1.05 < max(spread) < 1.6, spread
    # Switched off, the colour steps draw nothing: the rest sees the pre-colour random stream.
    plain = replace(FLIP_ONLY, rgb_gain=1.5, rgb_noise_max=0.05)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    _augment_rgb(rgb, a, plain)
    b.uniform(1 / 1.5, 1.5), b.uniform(1.0, 1.0), b.random()  # gain, gamma, blur
    b.normal(0, b.uniform(0, 0.05), rgb.shape)  # noise
    assert a.random() == b.random()


def test_bag_arrays_decode_and_cache(synth_bag: Path) -> None:
    a = load_bag_arrays(synth_bag, cache=False)
    assert a.events.dtype == EVENT_DTYPE and a.events.size > 1000
    assert np.all(np.diff(a.events["t"]) >= 0)
    # event times are ROS times inside the recording, like the image stamps
    assert a.frame_stamps[0] - 40_000_000 < a.events["t"][0] < a.frame_stamps[-1]
    assert a.frames.shape == (12, 260, 346, 3) and a.gt_points.shape == (12, 70, 2)
    assert np.array_equal(a.gt_stamps, a.frame_stamps)
    assert a.hf_points.shape[0] >= 390 and a.K is not None and a.light == 1 and a.motion == 0
    cached = load_bag_arrays(synth_bag)
    again = load_bag_arrays(synth_bag)  # from the cache, memory-mapped
    assert isinstance(again.events, np.memmap)
    for k in ("events", "frames", "gt_points", "hf_stamps", "pose_rot"):
        assert np.array_equal(getattr(cached, k), getattr(a, k))
        assert np.array_equal(getattr(again, k), getattr(a, k))


def test_sample_contract_and_ground_truth_in_crop(synth_bag: Path) -> None:
    ds = BagWindowDataset([load_bag_arrays(synth_bag)], InputSpec(size=64), NO_AUG, hf_per_frame=2)
    assert len(ds) == 12 + 2 * 12  # frame samples + 2 high-rate samples per frame
    s = ds[5]
    assert set(s) == set(SAMPLE_KEYS)
    assert s["events"].shape == (InputSpec().event_channels, 64, 64)
    assert s["rgb"].shape == (3, 64, 64) and s["rgb"].min() >= 0 and s["rgb"].max() <= 1
    lm = s["landmarks"]
    assert lm.shape == (70, 2) and lm.dtype == np.float32
    # the box is the landmark extent x 1.25: all points inside, spread over the crop
    assert lm.min() > 0.05 and lm.max() < 0.95 and np.ptp(lm[:, 0]) > 0.6
    assert np.all(np.isfinite(s["pose_deg"]))
    # the window's events reach the crop: time surfaces in (0, 1], event frame around 0.5
    ts = s["events"][1:3]
    assert 0 < ts.max() <= 1 and np.count_nonzero(ts) > 50
    assert abs(float(np.median(s["events"][0])) - 0.5) < 1e-6


def test_augmentation_is_deterministic_per_epoch(synth_bag: Path) -> None:
    bags = [load_bag_arrays(synth_bag)]
    a = BagWindowDataset(bags, InputSpec(size=48), AugmentConfig(), seed=3)
    b = BagWindowDataset(bags, InputSpec(size=48), AugmentConfig(), seed=3)
    x, y = a[4], b[4]
    for k in ("events", "rgb", "landmarks"):
        assert np.array_equal(x[k], y[k])
    b.set_epoch(1)
    assert not np.array_equal(x["landmarks"], b[4]["landmarks"])


def test_flip_mirrors_images_and_reorders_landmarks(synth_bag: Path) -> None:
    bags = [load_bag_arrays(synth_bag)]
    plain = BagWindowDataset(bags, InputSpec(size=48), NO_AUG)[7]
    flip = BagWindowDataset(bags, InputSpec(size=48), FLIP_ONLY)[7]
    assert np.allclose(flip["rgb"], plain["rgb"][:, :, ::-1], atol=1e-5)
    assert np.allclose(flip["events"], plain["events"][:, :, ::-1], atol=1e-5)
    assert np.allclose(flip["landmarks"], flip_normalized(plain["landmarks"], REP155_70), atol=1e-5)
    assert np.array_equal(flip["visible"], plain["visible"][REP155_70.flip])
    assert np.allclose(flip["pose_deg"], plain["pose_deg"] * [-1, 1, -1], atol=1e-4)


def test_build_dataset_config_errors(synth_bag: Path, tmp_path: Path) -> None:
    ds = build_dataset({"paths": {"val": [str(synth_bag)]}, "input": {"size": 32}}, "val", 0)
    assert len(ds) == 12 and not ds.augment.enabled
    with pytest.raises(ValueError, match="unknown keys"):
        build_dataset({"paths": {"val": [str(synth_bag)]}, "colour": 1}, "val", 0)
    with pytest.raises(ValueError, match="no paths"):
        build_dataset({"paths": {}}, "train", 0)
    with pytest.raises(FileNotFoundError, match="no bag"):
        build_dataset({"paths": {"val": [str(tmp_path / "nope*")]}}, "val", 0)


def test_use_rgb_false_gives_event_only_samples(synth_bag: Path) -> None:
    cfg = {"paths": {"val": [str(synth_bag)]}, "input": {"size": 32}}
    with_rgb = build_dataset(cfg, "val", 0)[3]
    without = build_dataset({**cfg, "use_rgb": False}, "val", 0)[3]
    assert with_rgb["rgb_present"] and with_rgb["rgb"].any()
    assert not without["rgb_present"] and not without["rgb"].any()
    np.testing.assert_array_equal(without["events"], with_rgb["events"])
    np.testing.assert_array_equal(without["landmarks"], with_rgb["landmarks"])
    with pytest.raises(ValueError, match="use_rgb"):
        build_dataset({**cfg, "use_rgb": "no"}, "val", 0)


def _renamed_copy(src: Path, dst: Path, rename: dict[str, str]) -> Path:
    """``src`` with some topics renamed (messages unchanged)."""
    from facealign_ros.bag import BagReader, BagWriter

    with BagReader(src) as bag, BagWriter(dst) as out:
        for topic, summary in bag.topics.items():
            out.add_topic(rename.get(topic, topic), summary.msgtype)
        for topic, stamp, msg in bag.messages():
            out.write(rename.get(topic, topic), stamp, msg)
    return dst


def test_bag_arrays_find_input_topics_by_type(synth_bag: Path, tmp_path: Path) -> None:
    from facealign_ros import topics

    rename = {
        topics.EVENTS: "/dvs/events",
        topics.IMAGE: "/front/image",
        topics.CAMERA_INFO: "/front/info",
    }
    moved = load_bag_arrays(_renamed_copy(synth_bag, tmp_path / "renamed", rename), cache=False)
    ref = load_bag_arrays(synth_bag, cache=False)
    for k in ("events", "frames", "frame_stamps", "gt_points", "K"):
        assert np.array_equal(getattr(moved, k), getattr(ref, k)), k
    # a second event topic without the default name is ambiguous: a clear error
    from facealign_ros.bag import BagReader, BagWriter

    dup = tmp_path / "dup"
    with BagReader(tmp_path / "renamed") as bag, BagWriter(dup) as out:
        for topic, summary in bag.topics.items():
            out.add_topic(topic, summary.msgtype)
        out.add_topic("/dvs2/events", "event_camera_msgs/msg/EventPacket")
        for topic, stamp, msg in bag.messages():
            out.write(topic, stamp, msg)
            if topic == "/dvs/events":
                out.write("/dvs2/events", stamp, msg)
    with pytest.raises(ValueError, match="several event_camera_msgs/msg/EventPacket topics"):
        load_bag_arrays(dup, cache=False)


def test_negative_crops_are_away_from_the_face(synth_bag: Path) -> None:
    from facealign_ros.face.crop import box_from_landmarks, invert_affine, transform_points

    bag = load_bag_arrays(synth_bag)
    aug = AugmentConfig(negative_prob=1.0)
    ds = BagWindowDataset([bag], InputSpec(size=32), aug, seed=5)
    ds_pos = BagWindowDataset([bag], InputSpec(size=32), AugmentConfig(), seed=5)
    assert all(ds_pos[i]["face_present"] for i in range(6))
    for i in range(6):
        s = ds[i]
        assert s["face_present"] is False
        corners = transform_points(np.array([[0.0, 0], [31, 31]]), invert_affine(s["A"]))
        row = int(np.argmin(np.abs(bag.gt_stamps - s["stamp_ns"])))
        face = box_from_landmarks(bag.gt_points[row].astype(float), bag.gt_visible[row], 1.25)
        (x0, y0), (x1, y1) = corners
        ix = max(0.0, min(x1, face.cx + face.side / 2) - max(x0, face.cx - face.side / 2))
        iy = max(0.0, min(y1, face.cy + face.side / 2) - max(y0, face.cy - face.side / 2))
        inter = ix * iy
        assert inter / ((x1 - x0) * (y1 - y0) + face.side**2 - inter) < 0.1


def test_input_topics_prefer_the_labelled_image_topic(tmp_path: Path) -> None:
    import json

    from facealign_ros import topics
    from facealign_ros.bag import BagReader, BagWriter, msg_class
    from training.data.bag_arrays import input_topics

    string = msg_class("std_msgs/msg/String")
    path = tmp_path / "two_cameras"
    with BagWriter(path) as out:
        for topic, typename in (
            (topics.EVENTS, "event_camera_msgs/msg/EventPacket"),
            (topics.IMAGE, "sensor_msgs/msg/Image"),
            ("/cam_reg/image", "sensor_msgs/msg/Image"),
            (topics.LABEL_METADATA, "std_msgs/msg/String"),
        ):
            out.add_topic(topic, typename)
        meta = {"options": {"image_topic": "/cam_reg/image", "camera_info_topic": "/none"}}
        out.write(topics.LABEL_METADATA, 1, string(data=json.dumps(meta)))
    with BagReader(path) as bag:
        assert input_topics(bag, path) == (topics.EVENTS, "/cam_reg/image", "")


def test_bag_arrays_read_compressed_images(synth_bag: Path, compressed_synth_bag: Path) -> None:
    """A bag recorded with ``image_raw/compressed`` (PNG) only: the same frames as raw."""
    from facealign_ros.bag import BagReader
    from training.data.bag_arrays import input_topics

    with BagReader(compressed_synth_bag) as bag:
        assert input_topics(bag, compressed_synth_bag)[1] == "/camera/image_raw/compressed"
    packed = load_bag_arrays(compressed_synth_bag, cache=False)
    ref = load_bag_arrays(synth_bag, cache=False)
    assert len(packed.frames) == len(ref.frames) > 0
    assert all(np.array_equal(a, b) for a, b in zip(packed.frames, ref.frames, strict=True))
    assert np.array_equal(packed.frame_stamps, ref.frame_stamps)


@pytest.fixture(scope="module")
def empty_seat_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synth_bag``'s scene (seed 11, 0.4 s, low light) without its person: no ground truth."""
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    out = tmp_path_factory.mktemp("bags") / "empty_seat"
    scene = SceneConfig(seed=11, seconds=0.4, light="low", motion="slow", face=False)
    write_synth_bag(out, scene)
    return out


def test_an_empty_seat_recording_gives_negative_crops_where_the_search_looks(
    synth_bag: Path, empty_seat_bag: Path
) -> None:
    from facealign_ros.face.crop import invert_affine, transform_points

    with pytest.raises(ValueError, match="no ground truth"):
        load_bag_arrays(empty_seat_bag)
    empty = load_bag_arrays(empty_seat_bag, require_gt=False)
    assert empty.gt_stamps.size == 0 and empty.frames.shape[0] > 0 and empty.events.size > 0
    with pytest.raises(ValueError, match="no ground truth"):  # the cached arrays say so too
        load_bag_arrays(empty_seat_bag)
    faces = load_bag_arrays(synth_bag)
    spec = InputSpec(size=32)
    ds = BagWindowDataset([faces], spec, AugmentConfig(), seed=5, negative_bags=[empty],
                          negative_repeat=3)  # fmt: skip
    base = len(BagWindowDataset([faces], spec, AugmentConfig(), seed=5))
    first = int(empty.events["t"][0]) + spec.window_ns
    frames = int(np.count_nonzero(empty.frame_stamps >= first))
    assert frames > 0 and len(ds) == base + 3 * frames
    short = min(empty.width, empty.height)
    for i in range(base, len(ds)):
        s = ds[i]
        assert set(s) == set(SAMPLE_KEYS) and s["face_present"] is False
        assert s["rgb_present"] and not s["visible"].any() and np.isnan(s["pose_deg"]).all()
        assert s["events"].shape == (spec.event_channels, 32, 32)
        corners = transform_points(np.array([[-0.5, -0.5], [31.5, -0.5]]), invert_affine(s["A"]))
        side = float(np.hypot(*(corners[1] - corners[0])))  # the crop's side in sensor pixels
        assert 0.15 * short <= side <= 1.3 * short
    assert all(ds[i]["face_present"] for i in range(base))
    with pytest.raises(ValueError, match="negative_repeat"):
        BagWindowDataset([faces], spec, negative_bags=[empty], negative_repeat=0)
    with pytest.raises(ValueError, match="has face ground truth"):  # a mix-up of the globs
        BagWindowDataset([faces], spec, negative_bags=[faces])
    with pytest.raises(ValueError, match="no full event window"):
        BagWindowDataset([faces], spec, negative_bags=[replace(empty, events=empty.events[:0])])
    # an event-only empty recording: samples on a 30 Hz grid of its events, no RGB
    no_rgb = replace(empty, frames=empty.frames[:0], frame_stamps=empty.frame_stamps[:0])
    ds = BagWindowDataset([faces], spec, AugmentConfig(), seed=5, negative_bags=[no_rgb])
    span = (int(empty.events["t"][-1]) - first) / 1e9
    assert len(ds) - base == int(span * 30) + 1
    s = ds[len(ds) - 1]
    assert s["face_present"] is False and not s["rgb_present"] and not s["rgb"].any()
    assert first <= s["stamp_ns"] <= int(empty.events["t"][-1])


def test_build_dataset_reads_negative_recordings_for_training_only(
    synth_bag: Path, empty_seat_bag: Path
) -> None:
    cfg = {"paths": {"train": [str(synth_bag)], "val": [str(synth_bag)],
                     "negatives": [str(empty_seat_bag)]}, "negative_repeat": 2}  # fmt: skip
    train, val = build_dataset(cfg, "train", 0), build_dataset(cfg, "val", 0)
    assert len(train) > len(val) and not all(train[i]["face_present"] for i in range(len(train)))
    assert all(val[i]["face_present"] for i in range(len(val)))
    with pytest.raises(ValueError, match="negative_repeat"):
        build_dataset({**cfg, "negative_repeat": 0.5}, "train", 0)


def _edited_copy(src: Path, dst: Path, edit) -> Path:
    """``src`` with ``edit(topic, msgtype, msg) -> (msgtype, msg) | None`` applied per message."""
    from facealign_ros.bag import BagReader, BagWriter

    with BagReader(src) as bag, BagWriter(dst) as out:
        types = {}
        for topic, stamp, msg in bag.messages():
            got = edit(topic, bag.topics[topic].msgtype, msg)
            if got is None:
                continue
            if topic not in types:
                types[topic] = got[0]
                out.add_topic(topic, got[0])
            out.write(topic, stamp, got[1])
    return dst


def test_unreadable_or_non_finite_ground_truth_names_the_bag(synth_bag: Path, tmp_path: Path):
    from facealign_ros import topics
    from facealign_ros.bag import msg_class

    def wrong_type(topic, msgtype, msg):
        if topic != topics.GT_LANDMARKS:
            return msgtype, msg
        return "std_msgs/msg/String", msg_class("std_msgs/msg/String")(data="not landmarks")

    bad = _edited_copy(synth_bag, tmp_path / "gt_pose", wrong_type)
    with pytest.raises(ValueError, match="gt_pose.*cannot read it for training"):
        load_bag_arrays(bad, cache=False)

    first: list[int] = []

    def one_nan(topic, msgtype, msg):
        if topic == topics.GT_LANDMARKS and not first:
            first.append(1)
            msg.landmarks[3].x = float("nan")
        return msgtype, msg

    whole = load_bag_arrays(synth_bag, cache=False)
    nan = load_bag_arrays(_edited_copy(synth_bag, tmp_path / "gt_nan", one_nan), cache=False)
    assert nan.gt_stamps.size == whole.gt_stamps.size - 1  # skipped, not a NaN label
    assert np.isfinite(nan.gt_points).all()


def test_a_recording_without_rgb_frames_is_named_not_dropped(synth_bag: Path, tmp_path: Path):
    from facealign_ros import topics

    def no_rgb(topic, msgtype, msg):
        return None if topic == topics.IMAGE else (msgtype, msg)

    frameless = load_bag_arrays(_edited_copy(synth_bag, tmp_path / "events_gt", no_rgb), False)
    spec = InputSpec(size=64)
    with pytest.raises(ValueError, match="without RGB frames.*events_gt"):
        BagWindowDataset([load_bag_arrays(synth_bag), frameless], spec, use_rgb=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [("rotation_deg", float("nan")), ("rgb_gain", float("nan")), ("box_shift", float("inf")),
     ("event_drop_max", -3.0), ("flip_prob", 5.0), ("rgb_gain", 0.5)],
)  # fmt: skip
def test_augmentation_values_are_range_checked(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"augment.{field} must be in"):
        AugmentConfig(**{field: value})


def test_paths_of_the_wrong_type_are_named(synth_bag: Path) -> None:
    for paths, message in ((5, "paths must map a split"), ({"train": 5}, "paths.train must be")):
        with pytest.raises(ValueError, match=message):
            build_dataset({"kind": "bags", "paths": paths}, "train", seed=0)
    for key in ("hf_per_frame", "label_seed"):
        with pytest.raises(ValueError, match=f"{key}.*must be >= 0|must be >= 0"):
            cfg = {"kind": "bags", "paths": {"train": [str(synth_bag)]}, key: -5}
            build_dataset(cfg, "train", seed=0)
