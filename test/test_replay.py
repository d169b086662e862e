"""``facealign replay`` end to end on a generated bag (random-weight model), and its metrics."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from facealign_ros.bag import BagReader
from facealign_ros.face.preprocess import InputSpec
from facealign_ros.messages import landmarks_from_msg, stamp_ns
from facealign_ros.pipeline import FaceResult
from training.replay import GroundTruth, add_replay_parser, run_replay, score

SPEC = InputSpec(size=64, window_ms=20.0)


@pytest.fixture(scope="module")
def ckpt(random_lite_checkpoint: Path) -> Path:
    return random_lite_checkpoint


def digest(path: Path) -> str:
    h = hashlib.sha1()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_replay_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_replay_end_to_end(synth_bag, ckpt, tmp_path, capsys):
    before = digest(synth_bag)
    out = tmp_path / "out"
    args = cli(["replay", str(synth_bag), "-o", str(out), "--model", str(ckpt),
                "--device", "cpu", "--json"])  # fmt: skip
    assert run_replay(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert digest(synth_bag) == before  # the input is never touched
    m = summary["metrics"]
    assert m is not None and m["count"] + 0 >= 0 and {"nme", "fr10", "auc10"} <= set(m)
    assert json.loads((tmp_path / "out.metrics.json").read_text()) == m
    with BagReader(synth_bag) as bag:
        image_stamps = [stamp_ns(msg) for _, _, msg in bag.messages("/camera/image_raw")]
    with BagReader(out) as bag:
        topics = bag.topics
        assert topics["/humans/faces/tracked"].msgtype == "hri_msgs/msg/IdsList"
        tracked = [stamp_ns(msg) for _, _, msg in bag.messages("/humans/faces/tracked")]
        assert tracked == image_stamps  # one answer per frame, stamped with the frame
        if "/facealign/landmarks" in topics:
            for _, _, msg in bag.messages("/facealign/landmarks"):
                assert stamp_ns(msg) in image_stamps and len(msg.landmarks) == 70
    assert summary["results"] == len(image_stamps)


def test_replay_refuses_existing_output_and_bad_model(synth_bag, tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    assert run_replay(cli(["replay", str(synth_bag), "-o", str(out), "--json"])) == 2
    missing = str(tmp_path / "none.safetensors")
    args = cli(["replay", str(synth_bag), "-o", str(tmp_path / "o2"), "--model", missing])
    assert run_replay(args) == 2
    assert "does not exist" in capsys.readouterr().err


def test_replay_param_sets_node_parameters_and_rejects_unknown_ones(synth_bag, tmp_path, capsys):
    from training.replay import _config

    args = cli(["replay", str(synth_bag), "-o", str(tmp_path / "o"), "--param", "warm_start=false",
                "--param", "warm_anchor_every=3", "--detect-threshold", "0.2"])  # fmt: skip
    cfg = _config(args)
    assert (cfg.warm_start, cfg.warm_anchor_every, cfg.detect_threshold) == (False, 3, 0.2)
    bad = cli(["replay", str(synth_bag), "-o", str(tmp_path / "o3"), "--param", "bogus=1"])
    assert run_replay(bad) == 2
    assert "bogus" in capsys.readouterr().err
    assert not (tmp_path / "o3").exists()


def test_score_known_answers(synth_bag):
    gt = GroundTruth()
    with BagReader(synth_bag) as bag:
        for topic, _, msg in bag.messages(["/facealign/gt/landmarks"]):
            gt.add(topic, msg)
            last = msg
    stamp = stamp_ns(last)
    pts, _ = landmarks_from_msg(last)

    def res(p: np.ndarray | None, t: int = stamp) -> FaceResult:
        if p is None:
            return FaceResult.no_face(t, "fused", 346, 260, "")
        return FaceResult(t, "f1", p, np.ones(70), None, None, "fused", 346, 260, "", 0, 0)

    perfect = score([res(pts)], gt)
    assert perfect["nme"] == 0 and perfect["fr10"] == 0 and perfect["auc10"] == 1
    iod = np.linalg.norm(pts[36] - pts[45])
    shifted = score([res(pts + [0.2 * iod, 0])], gt)  # every point off by 0.2 IOD
    assert np.isclose(shifted["nme"], 0.2) and shifted["fr10"] == 1 and shifted["auc10"] == 0
    missing = score([res(pts), res(None, stamp - 1)], gt)
    assert missing["coverage"] == 0.5 and missing["fr10_all"] == 0.5
    assert score([res(pts, stamp + 10**7)], gt)["count"] == 0  # no ground truth that close


def test_non_finite_ground_truth_is_refused_not_scored(synth_bag):
    """NaN ground truth compared with anything is no failure: it must not count as a hit."""
    from facealign_ros import topics
    from training.replay import _add_ground_truth

    gt = GroundTruth()
    with BagReader(synth_bag) as bag:
        _, _, msg = next(iter(bag.messages([topics.GT_LANDMARKS])))
        _, _, pose = next(iter(bag.messages([topics.GT_HEAD_POSE])))
    msg.landmarks[5].x = float("nan")
    assert _add_ground_truth(gt, topics.GT_LANDMARKS, msg) is False and not gt.points
    pose.pose.orientation.w = float("inf")
    assert _add_ground_truth(gt, topics.GT_HEAD_POSE, pose) is False and not gt.poses


def test_replay_skips_ground_truth_it_cannot_read(synth_bag, ckpt, tmp_path, capsys):
    """A ground-truth topic of another type is counted and skipped; the replay goes on."""
    from facealign_ros import topics
    from facealign_ros.bag import BagWriter, msg_class

    odd = tmp_path / "odd_gt"
    string = msg_class("std_msgs/msg/String")
    with BagReader(synth_bag) as bag, BagWriter(odd) as out:
        keep = [topics.EVENTS, topics.IMAGE]
        for t in keep:
            out.add_topic(t, bag.topics[t].msgtype)
        out.add_topic(topics.GT_LANDMARKS, "std_msgs/msg/String")
        for topic, log_ns, msg in bag.messages(keep):
            out.write(topic, log_ns, msg)
            if topic == topics.IMAGE:
                out.write(topics.GT_LANDMARKS, log_ns, string(data="not landmarks"))
    args = cli(["replay", str(odd), "-o", str(tmp_path / "out"), "--model", str(ckpt),
                "--device", "cpu", "--json"])  # fmt: skip
    assert run_replay(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["results"] > 0 and summary["metrics"] is None
    assert summary["ground_truth_skipped"] == {topics.GT_LANDMARKS: summary["results"]}


def test_replay_refuses_an_output_inside_its_input(synth_bag, tmp_path, capsys):
    before = digest(synth_bag)
    storage = next(synth_bag.glob("*.mcap"))  # the bag named by its storage file
    assert run_replay(cli(["replay", str(storage), "-o", str(synth_bag / "in2"), "--json"])) == 2
    assert "inside the input bag" in capsys.readouterr().err
    for out in (synth_bag, synth_bag / "inner"):
        assert run_replay(cli(["replay", str(synth_bag), "-o", str(out), "--json"])) == 2
        assert "inside the input bag" in capsys.readouterr().err
    assert digest(synth_bag) == before and not (synth_bag / "inner").exists()


def test_replay_takes_the_compressed_stream_when_the_bag_has_only_that(
    synth_bag, compressed_synth_bag, ckpt, tmp_path, capsys
):
    """Images recorded as ``image_raw/compressed`` (lossless PNG here): the same answers."""
    from facealign_ros import topics

    packed = compressed_synth_bag

    def answers(bag: Path, name: str) -> tuple[dict, list]:
        args = cli(["replay", str(bag), "-o", str(tmp_path / name), "--model", str(ckpt),
                    "--device", "cpu", "--json"])  # fmt: skip
        assert run_replay(args) == 0
        summary = json.loads(capsys.readouterr().out)
        with BagReader(tmp_path / name) as b:
            got = [landmarks_from_msg(m)[0] for _, _, m in b.messages(["/facealign/landmarks"])]
        return summary, got

    raw, want = answers(synth_bag, "raw")
    summary, got = answers(packed, "packed")
    assert summary["image_topic"] == topics.IMAGE + "/compressed"
    assert summary["pipeline"].get("images") == raw["pipeline"].get("images") > 0
    assert len(got) == len(want) > 0
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert summary["metrics"] == raw["metrics"]


def test_a_recording_of_a_driver_that_does_not_stamp_replays_with_restamp_unstamped(
    synth_bag, ckpt, tmp_path, capsys
):
    """Header stamps 0 on events and images: dropped, and the summary says so.

    Restamped from the bag's receive times (equal to the stamps in the engine's bags): the same
    answers as the original recording.
    """
    from facealign_ros import topics
    from facealign_ros.bag import BagWriter

    unstamped = tmp_path / "unstamped"
    with BagReader(synth_bag) as bag, BagWriter(unstamped) as out:
        for t, info in bag.topics.items():
            out.add_topic(t, info.msgtype)
        for topic, log_ns, msg in bag.messages(list(bag.topics)):
            if topic in (topics.EVENTS, topics.IMAGE):
                msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
            out.write(topic, log_ns, msg)

    def answers(bag: Path, name: str, *extra: str) -> tuple[dict, list]:
        args = cli(["replay", str(bag), "-o", str(tmp_path / name), "--model", str(ckpt),
                    "--device", "cpu", "--json", *extra])  # fmt: skip
        assert run_replay(args) == 0
        summary = json.loads(capsys.readouterr().out)
        with BagReader(tmp_path / name) as b:
            if "/facealign/landmarks" not in b.topics:
                return summary, []
            got = [(stamp_ns(m), landmarks_from_msg(m)[0].tolist())
                   for _, _, m in b.messages(["/facealign/landmarks"])]  # fmt: skip
        return summary, got

    original, want = answers(synth_bag, "original")
    dropped, got = answers(unstamped, "dropped")
    inputs = original["pipeline"]["event_packets"] + original["pipeline"]["images"]
    assert dropped["results"] == 0 and got == [] and dropped["restamped"] == 0
    assert dropped["pipeline"]["drops"]["unstamped"] == inputs > 0
    restamped, got = answers(unstamped, "restamped", "--restamp-unstamped")
    assert restamped["restamped"] == inputs and restamped["pipeline"]["drops"]["unstamped"] == 0
    assert len(want) > 0 and got == want
    # the human summary points at the option
    from training.replay import print_summary

    print_summary(dropped)
    assert "--restamp-unstamped" in capsys.readouterr().out


def test_a_recording_without_a_face_is_scored_by_its_face_rate(ckpt, tmp_path, capsys):
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    bag = tmp_path / "empty_seat"
    write_synth_bag(bag, SceneConfig(seed=11, seconds=0.3, light="low", face=False))
    args = cli(["replay", str(bag), "-o", str(tmp_path / "out"), "--model", str(ckpt),
                "--device", "cpu", "--json"])  # fmt: skip
    assert run_replay(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["metrics"] is None  # no ground truth to score against
    assert summary["results"] == 9
    assert summary["face_rate"] == summary["faces"] / 9
