"""Shared fixtures: tiny synthetic bags made by the tests themselves, a JSON command runner."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# The suite is deterministic: property tests draw the same (seeded) examples on every run, so a
# CI result does not depend on which random examples a run happened to try.
settings.register_profile("facealign", derandomize=True)
settings.load_profile("facealign")


def _python(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python ARGS`` with this interpreter, output captured as text, any exit status."""
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=False, timeout=timeout
    )


@pytest.fixture(scope="session")
def python_command() -> Callable[..., subprocess.CompletedProcess]:
    """``run(*args, timeout=600)``: runs ``python ARGS``; returns the completed process."""
    return _python


@pytest.fixture(scope="session")
def json_command() -> Callable[..., dict]:
    """``run(*args, timeout=600)``: runs ``python ARGS``; returns its one-line JSON output.

    The command must exit 0 and print exactly one line.
    """

    def run(*args: str, timeout: float = 600) -> dict:
        res = _python(*args, timeout=timeout)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.strip().splitlines()
        assert len(lines) == 1, res.stdout[-2000:]
        return json.loads(lines[0])

    return run


@pytest.fixture(scope="session")
def synth_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 0.4 s synthetic bag (346x260, low light, slow motion, seed 11) with ground truth."""
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    out = tmp_path_factory.mktemp("bags") / "synth_low"
    write_synth_bag(out, SceneConfig(seed=11, seconds=0.4, light="low", motion="slow"))
    return out


@pytest.fixture(scope="session")
def compressed_synth_bag(synth_bag: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synth_bag`` with its images as PNG ``CompressedImage`` on ``IMAGE/compressed`` only.

    PNG is lossless: whatever reads it must see the same frames as in ``synth_bag``.
    """
    import cv2

    from facealign_ros import topics
    from facealign_ros.bag import BagReader, BagWriter, msg_class
    from facealign_ros.messages import image_from_msg

    out = tmp_path_factory.mktemp("bags") / "synth_low_png"
    packed = topics.IMAGE + "/compressed"
    image = msg_class(topics.COMPRESSED_IMAGE_TYPE)
    with BagReader(synth_bag) as bag, BagWriter(out) as writer:
        for t, summary in bag.topics.items():
            if t != topics.IMAGE:
                writer.add_topic(t, summary.msgtype)
        writer.add_topic(packed, topics.COMPRESSED_IMAGE_TYPE)
        for topic, log_ns, msg in bag.messages(list(bag.topics)):
            if topic != topics.IMAGE:
                writer.write(topic, log_ns, msg)
                continue
            png = cv2.imencode(".png", image_from_msg(msg)[:, :, ::-1])[1].reshape(-1)
            fmt = "rgb8; png compressed bgr8"
            writer.write(packed, log_ns, image(header=msg.header, format=fmt, data=png))
    return out


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep decoded-bag caches of the test run out of the user's cache directory."""
    import os

    # set, not setdefault: a user's own cache (with a fetched face detector) must not change
    # what the tests see
    os.environ["FACEALIGN_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread: 2 threads stall badly when the 2-core machine is busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def random_lite_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight lite CMFA checkpoint (70 points, 64 px, InputSpec(size=64, 20 ms))."""
    import torch

    from facealign_ros.face.preprocess import InputSpec
    from facealign_ros.model import CMFA, lite_config, save_checkpoint

    spec = InputSpec(size=64, window_ms=20.0)
    torch.manual_seed(0)
    cfg = lite_config(num_points=70, input_size=64, event_channels=spec.event_channels)
    path = tmp_path_factory.mktemp("model") / "lite.safetensors"
    save_checkpoint(path, CMFA(cfg), landmark_scheme="rep155_70",
                    representations=spec.representations, preprocessing=spec.to_dict())  # fmt: skip
    return path


@pytest.fixture(scope="session")
def blazeface_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real model, fetched into a private cache (not the session's FACEALIGN_CACHE)."""
    from facealign_ros.face import detector as fd

    root = tmp_path_factory.mktemp("detector_cache")
    try:
        return fd.fetch_detector_model(root)
    except fd.DetectorError as exc:
        pytest.skip(f"mediapipe wheel unavailable: {exc}")
