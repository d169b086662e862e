"""End to end: ``run_synth`` to a rosbag2, determinism, bad arguments (training.synth.cli)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from facealign_ros.bag import BagReader, time_to_ns
from facealign_ros.events import Decoder
from facealign_ros.face.pose import euler_to_matrix
from facealign_ros.messages import matrix_to_quat
from training.synth.bagout import DEFAULT_START_NS, TOPICS
from training.synth.cli import add_synth_parser, run_synth

FAST = ["--head", "ellipsoid", "--seconds", "0.1", "--workers", "0"]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_synth_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["synth", *argv])


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_run_synth_writes_a_bag_with_all_topics(tmp_path: Path) -> None:
    out = tmp_path / "bag"
    assert run_synth(_args("--out", str(out), "--seed", "3", "--json", *FAST)) == 0
    with BagReader(out) as bag:
        topics = bag.topics
        assert {t: s.msgtype for t, s in topics.items()} == TOPICS
        assert topics["/camera/image_raw"].count == 3
        assert topics["/facealign/gt/landmarks_hf"].count == 100
        assert topics["/event_camera/events"].count > 50
        msgs: dict[str, list] = {t: [] for t in TOPICS}
        for topic, stamp, msg in bag.messages():
            msgs[topic].append((stamp, msg))
    meta = json.loads(msgs["/facealign/synth/metadata"][0][1].data)
    assert meta["seed"] == 3 and meta["scene"]["seconds"] == 0.1 and meta["engine_version"]
    img = msgs["/camera/image_raw"][0][1]
    assert (img.encoding, img.width, img.height, img.step) == ("rgb8", 346, 260, 3 * 346)
    info = msgs["/camera/camera_info"][0][1]
    assert info.distortion_model == "plumb_bob" and not np.any(info.d) and info.k[0] > 100
    lm = msgs["/facealign/gt/landmarks"][0][1]
    assert len(lm.landmarks) == 70 and (lm.width, lm.height) == (346, 260)
    assert {p.c for p in lm.landmarks} <= {0.0, 1.0}
    assert all(0 <= p.x <= 1 and 0 <= p.y <= 1 for p in lm.landmarks)
    pose = msgs["/facealign/gt/head_pose"][0][1]
    assert time_to_ns(pose.header.stamp) == time_to_ns(img.header.stamp) == msgs[
        "/camera/image_raw"][0][0]  # fmt: skip
    assert 0.2 < pose.pose.position.z < 1.5
    # events: evt3, time_base 0, seq from 0, stamps = start + first event, decodable in order
    dec = Decoder("evt3", 346, 260)
    seqs, total = [], 0
    for stamp, pkt in msgs["/event_camera/events"]:
        assert pkt.encoding == "evt3" and pkt.time_base == 0
        ev = dec.decode_packet(pkt)
        assert len(ev) and stamp == time_to_ns(pkt.header.stamp)
        assert stamp - DEFAULT_START_NS == pytest.approx(int(ev["t"][0]), abs=1000)
        assert ev["t"].max() - ev["t"].min() < 1_000_000
        seqs.append(pkt.seq)
        total += len(ev)
    assert seqs == list(range(len(seqs)))
    assert total == meta["stats"]["events"] and dec.stats.errors == 0


def test_same_seed_gives_byte_identical_bags(tmp_path: Path) -> None:
    bags = []
    for i, workers in enumerate(("0", "1")):
        out = tmp_path / str(i) / "bag"
        argv = [*FAST[:-1], workers, "--out", str(out), "--seed", "4", "--light", "low"]
        assert run_synth(_args(*argv)) == 0
        bags.append(_files(out))
    assert bags[0] == bags[1]
    out = tmp_path / "other" / "bag"
    assert run_synth(_args(*FAST, "--out", str(out), "--seed", "5", "--light", "low")) == 0
    assert _files(out) != bags[0]


def test_sqlite3_storage_is_deterministic(tmp_path: Path) -> None:
    bags = []
    for i in range(2):
        out = tmp_path / str(i) / "bag"
        assert run_synth(_args(*FAST, "--out", str(out), "--storage", "sqlite3")) == 0
        bags.append(_files(out))
    assert bags[0] == bags[1] and any(name.endswith(".db3") for name in bags[0])


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["--seconds", "-1"], 2, "seconds must be positive"),
        (["--light", "dim"], 2, "unknown light level"),
        (["--motion", "wild"], 2, "unknown motion"),
        (["--workers", "-2"], 2, "--workers"),
    ],
)
def test_bad_arguments_fail_cleanly(tmp_path: Path, capsys, argv, code, needle) -> None:
    out = tmp_path / "bag"
    assert run_synth(_args(*FAST, "--out", str(out), *argv)) == code
    assert needle in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_existing_or_unwritable_output_leaves_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bag"
    out.mkdir()
    (out / "keep").write_text("x")
    assert run_synth(_args(*FAST, "--out", str(out))) == 1
    assert "exists" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"] and _files(out) == {
        "keep": b"x"}  # fmt: skip
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert run_synth(_args(*FAST, "--out", str(blocker / "sub" / "bag"))) == 1
    assert "cannot create" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "file"]


def test_sensor_argument_is_checked() -> None:
    with pytest.raises(SystemExit):
        _args("--sensor", "100x100")
    assert _args("--sensor", "640x480").sensor == (640, 480)


def test_quaternion_round_trip() -> None:
    for angles in ((0.3, -0.2, 0.1), (3.0, 0.1, -2.9), (0.0, 1.5, 0.0), (-3.1, 0.0, 0.0)):
        rot = euler_to_matrix(*angles)
        x, y, z, w = matrix_to_quat(rot)
        q = np.array([w, x, y, z])
        back = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])  # fmt: skip
        assert np.linalg.norm(q) == pytest.approx(1.0) and np.allclose(back, rot, atol=1e-9)
