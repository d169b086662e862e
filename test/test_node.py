"""The node module without rclpy: imports, parameter table vs config/facealign.yaml, wiring."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from facealign_ros import node
from facealign_ros.bag import msg_class
from facealign_ros.pipeline import FaceResult, PipelineConfig
from facealign_ros.results import result_to_messages

ROOT = Path(__file__).resolve().parents[1]


def yaml_params() -> dict:
    data = yaml.safe_load((ROOT / "config" / "facealign.yaml").read_text())
    (entry,) = data.values()
    return entry["ros__parameters"]


def test_module_imports_without_rclpy():
    if importlib.util.find_spec("rclpy") is None:
        assert node.rclpy is None
        assert node.main([]) == 1  # a clear message instead of a traceback
    assert callable(node.main) and node.NODE_NAME == "facealign"


def test_yaml_documents_every_parameter_with_its_default():
    params = yaml_params()
    table = {p.name: p for p in node.parameter_table()}
    assert set(params) == set(table)
    for name, p in table.items():
        assert params[name] == p.default, name
        assert type(params[name]) is type(p.default), name
    text = (ROOT / "config" / "facealign.yaml").read_text()
    for name in table:  # a comment line precedes every parameter
        lines = text.splitlines()
        i = next(k for k, line in enumerate(lines) if line.strip().startswith(f"{name}:"))
        assert lines[i - 1].strip().startswith("#"), name


def test_ranges_contain_the_defaults():
    for p in node.parameter_table():
        assert p.description
        if p.range is not None:
            assert p.range[0] <= p.default <= p.range[1], p.name


def test_split_parameters_round_trip():
    values = {p.name: p.default for p in node.parameter_table()}
    values["mode"] = "events"
    cfg, opts = node.split_parameters(values)
    assert cfg == PipelineConfig(mode="events")
    assert opts["events_topic"] == "events" and opts["publish_tf"] is True
    values["rate_hz"] = 0.0
    with pytest.raises(ValueError, match="rate_hz"):
        node.split_parameters(values)


def test_node_uses_only_what_the_pipeline_has():
    # the node runs only under rclpy: a pipeline attribute it misspells fails in the field only
    import re

    from facealign_ros.pipeline import Pipeline

    core = (ROOT / "facealign_ros" / "pipeline" / "core.py").read_text()
    has = set(dir(Pipeline)) | set(re.findall(r"^ {8}self\.(\w+)(?::[^=]*)? = ", core, re.M))
    src = (ROOT / "facealign_ros" / "node.py").read_text()
    used = set(re.findall(r"(?:self\.pipeline|\bpipe)\.(\w+)", src))
    assert {"on_events", "camera_model", "face", "snapshot"} <= used
    assert sorted(used - has) == []


class FakePub:
    def __init__(self, topic: str, typename: str) -> None:
        self.topic, self.typename, self.sent = topic, typename, []

    def publish(self, msg) -> None:
        self.sent.append(msg)


def face(face_id: str | None, stamp: int) -> FaceResult:
    if face_id is None:
        return FaceResult.no_face(stamp, "events", 346, 260, "cam")
    pts = np.c_[np.linspace(100, 200, 70), np.linspace(50, 150, 70)]
    return FaceResult(stamp, face_id, pts, np.ones(70), (90.0, 40.0, 210.0, 160.0), None,
                      "events", 346, 260, "cam", 1.0, 1.0)  # fmt: skip


def test_router_creates_and_removes_per_face_publishers():
    destroyed = []
    fixed = {"landmarks": "~/landmarks", "head_pose": "~/head_pose"}
    router = node.PublisherRouter(FakePub, destroyed.append, fixed)
    for pub, msg in router.route(result_to_messages(msg_class, face("f0001", 1), "~")):
        pub.publish(msg)
    assert set(router.publishers) == {
        "/humans/faces/tracked", "/humans/faces/f0001/roi", "/humans/faces/f0001/landmarks",
        "~/landmarks",
    }  # fmt: skip
    assert router.publishers["~/landmarks"].typename == "hri_msgs/msg/FacialLandmarks"
    router.route(result_to_messages(msg_class, face(None, 2), "~"))  # face gone
    assert {p.topic for p in destroyed} == {"/humans/faces/f0001/roi",
                                            "/humans/faces/f0001/landmarks"}  # fmt: skip
    tracked = router.publishers["/humans/faces/tracked"]
    assert [list(m.ids) for m in tracked.sent] == [["f0001"]]
    router.close()
    assert not router.publishers


def test_diagnostic_values_and_levels():
    from facealign_ros.pipeline.health import PipelineStats, diagnostic_summary

    st = PipelineStats()
    st.latency(10.0, 8.0)
    snap = st.snapshot()
    assert diagnostic_summary(snap) == (0, "ok")
    vals = node.diagnostic_values(snap)
    assert vals["latency_p50_ms"] == "10.00" and vals["drops.stale"] == "0"
    st.drop("bad_packet")
    assert diagnostic_summary(st.snapshot())[0] == 1
    st.latency(500.0, 500.0)
    for _ in range(100):
        st.latency(500.0, 500.0)
    assert diagnostic_summary(st.snapshot())[0] == 2


def test_compressed_images_follow_the_remapped_image_topic():
    opts = {"image_topic": "image", "image_transport": "raw"}
    assert node.image_subscription(opts) == ("image", "sensor_msgs/msg/Image")
    opts["image_transport"] = "compressed"
    remap = {"image": "/cam/front/image_raw"}.get  # what the node's resolve_topic_name does
    assert node.image_subscription(opts, remap) == (
        "/cam/front/image_raw/compressed",
        "sensor_msgs/msg/CompressedImage",
    )
    with pytest.raises(ValueError, match="image_transport"):
        node.split_parameters({"image_transport": "theora"})


def test_restamp_unstamped_gives_a_driver_that_does_not_stamp_its_receive_time():
    from types import SimpleNamespace

    from facealign_ros.pipeline.health import PipelineStats

    def message(sec: int, nanosec: int) -> SimpleNamespace:
        return SimpleNamespace(
            header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec))
        )

    seen, stats = [], PipelineStats()
    cb = node.restamping(lambda m: seen.append(m) or True, lambda: 1_700_000_002_500_000_000, stats)
    unstamped, stamped = message(0, 0), message(1_700_000_000, 7)
    assert cb(unstamped) and cb(stamped)
    assert (unstamped.header.stamp.sec, unstamped.header.stamp.nanosec) == (
        1_700_000_002,
        500_000_000,
    )
    assert (stamped.header.stamp.sec, stamped.header.stamp.nanosec) == (1_700_000_000, 7)
    assert seen == [unstamped, stamped] and stats.counters["restamped"] == 1
    # a clock at 0 (sim time before /clock) leaves the message to be dropped as unstamped
    late = message(0, 0)
    node.restamping(lambda m: True, lambda: 0, stats)(late)
    assert late.header.stamp.sec == 0 and stats.counters["restamped"] == 1
