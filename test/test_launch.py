"""launch/align.launch.py: parses and declares its arguments (launch_ros where installed)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[1] / "launch" / "align.launch.py"
ARGS = {"params_file", "mode", "device", "model", "namespace", "events_topic", "image_topic",
        "image_transport", "camera_info_topic", "bag", "rviz"}  # fmt: skip


def test_launch_file_declares_its_arguments_textually():
    tree = ast.parse(LAUNCH.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "ARGUMENTS" for t in node.targets
        ):
            names = {elt.elts[0].value for elt in node.value.elts}
    assert names == ARGS
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name)}  # fmt: skip
    assert {"LifecycleNode", "ChangeState", "OnStateTransition"} <= calls
    imported = {a.name.split(".")[0] for n in ast.walk(tree)
                if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}  # fmt: skip
    assert not imported & {"subprocess", "os"}
    assert "eval(" not in LAUNCH.read_text()


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros missing")
def test_launch_description_builds():  # pragma: no cover - needs ROS 2
    spec = importlib.util.spec_from_file_location("align_launch", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    desc = mod.generate_launch_description()
    declared = {a.name for a in desc.get_launch_arguments()}
    assert declared == ARGS
