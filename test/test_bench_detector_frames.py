"""``python -m training.bench.detector_frames`` end to end on a generated bag."""

from __future__ import annotations

import subprocess
from pathlib import Path


def test_counts_add_up_and_level_zero_changes_nothing(
    synth_bag: Path, blazeface_model: Path, json_command
) -> None:
    out = json_command(
        "-m", "training.bench.detector_frames", "--bags", str(synth_bag), "--every", "1",
        "--dim-level", "0,255", "--model", str(blazeface_model), "--json",
    )  # fmt: skip
    off, always = out["levels"]
    assert off["dim_level"] == 0 and always["dim_level"] == 255 and out["every"] == 1
    for lv in (off, always):
        assert lv["frames"] > 0 and lv["on"] + lv["off"] + lv["none"] == lv["frames"]
        assert [r["bag"] for r in lv["rows"]] == [synth_bag.name]
    assert off["dim"] == 0 and always["dim"] == always["frames"]  # 255: every frame is dim
    assert off["on"] > 0  # the low-light synthetic face is found as it is
    # framing of the detections on the face, by the frames they were found in
    assert off["framing"]["other"]["n"] == off["on"] and off["framing"]["dim"]["n"] == 0
    assert always["framing"]["dim"]["n"] == always["on"] and always["framing"]["other"]["n"] == 0
    q25, median, q75 = off["framing"]["other"]["extent"]
    assert 0.7 < q25 <= median <= q75 < 1.5  # BlazeFace's box is about the landmark extent
    q25, median, q75 = off["framing"]["other"]["drop"]
    assert -0.3 < q25 <= median <= q75 < 0.3
    assert off["framing"]["dim"]["extent"] is None


def test_bad_arguments_are_clear_errors(
    synth_bag: Path, blazeface_model: Path, tmp_path: Path, python_command
) -> None:
    def bench(*args: str) -> subprocess.CompletedProcess:
        return python_command("-m", "training.bench.detector_frames", *args, timeout=300)

    res = bench("--bags", str(tmp_path / "nothing"))
    assert res.returncode == 2 and "no such bag" in res.stderr
    res = bench("--bags", "x", "--dim-level", "300")
    assert res.returncode == 2 and "0-255" in res.stderr
    res = bench("--bags", "x", "--every", "0")
    assert res.returncode == 2 and "--every" in res.stderr
    from facealign_ros import topics
    from facealign_ros.bag import BagReader, BagWriter

    unlabelled = tmp_path / "unlabelled"  # the images, no ground truth
    with BagReader(synth_bag) as bag, BagWriter(unlabelled) as out:
        out.add_topic(topics.IMAGE, bag.topics[topics.IMAGE].msgtype)
        for topic, stamp, msg in bag.messages([topics.IMAGE]):
            out.write(topic, stamp, msg)
    res = bench("--bags", str(unlabelled))  # the test run's cache has no detector model
    assert res.returncode == 2 and "fetch-detector" in res.stderr
    res = bench("--bags", str(unlabelled), "--model", str(blazeface_model))
    assert res.returncode == 2 and str(unlabelled) in res.stderr and "ground truth" in res.stderr
