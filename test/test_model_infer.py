"""FaceAligner front door: checkpoint loading, devices, shapes, numpy results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facealign_ros.model.checkpoint import CheckpointError, save_checkpoint
from facealign_ros.model.cmfa import CMFA
from facealign_ros.model.config import lite_config
from facealign_ros.model.infer import (
    Alignment,
    FaceAligner,
    optimize_for_inference,
    resolve_device,
)

torch.set_num_threads(2)
CFG = lite_config(num_points=16, event_channels=4)


@pytest.fixture(scope="module")
def aligner(tmp_path_factory: pytest.TempPathFactory) -> FaceAligner:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fa") / "m.safetensors"
    save_checkpoint(path, CMFA(CFG), landmark_scheme="test16", representations=["voxel_grid"])
    return FaceAligner.from_checkpoint(path, device="cpu")


def test_predict_batch_and_single(aligner: FaceAligner) -> None:
    rng = np.random.default_rng(0)
    ev = rng.random((2, 4, 128, 128), dtype=np.float32)
    rgb = rng.random((2, 3, 128, 128), dtype=np.float32)
    fused = aligner.predict(ev, rgb)
    assert isinstance(fused, Alignment)
    assert fused.landmarks.shape == (2, 16, 2) and fused.landmarks.dtype == np.float32
    assert fused.confidence.shape == (2, 16)
    single = aligner.predict(ev[0], rgb[0])
    np.testing.assert_allclose(single.landmarks[0], fused.landmarks[0], atol=1e-5)
    event_only = aligner.predict(torch.from_numpy(ev))
    assert event_only.landmarks.shape == (2, 16, 2)
    warm = aligner.predict(ev, rgb, init_landmarks=fused.landmarks, stages=1)
    assert warm.landmarks.shape == (2, 16, 2)
    assert aligner.meta is not None and aligner.meta.landmark_scheme == "test16"
    assert (aligner.num_points, aligner.input_size) == (16, 128)


def test_predict_rejects_bad_shapes(aligner: FaceAligner) -> None:
    ev = np.zeros((1, 4, 128, 128), np.float32)
    with pytest.raises(ValueError, match="event must be"):
        aligner.predict(np.zeros((1, 3, 128, 128), np.float32))
    with pytest.raises(ValueError, match="rgb must be"):
        aligner.predict(ev, np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="batch sizes differ"):
        aligner.predict(ev, np.zeros((2, 3, 128, 128), np.float32))
    with pytest.raises(ValueError, match="init_landmarks"):
        aligner.predict(ev, init_landmarks=np.zeros((1, 5, 2), np.float32))
    with pytest.raises(ValueError, match="at least one"):
        aligner.predict(None)


def test_devices_and_missing_checkpoint(tmp_path: Path) -> None:
    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(CheckpointError, match="file not found"):
        FaceAligner.from_checkpoint(tmp_path / "missing.safetensors")


def test_optimized_copy_matches_original() -> None:
    torch.manual_seed(0)
    model = CMFA(CFG).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics so that folding matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.event_backbone.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.event_backbone.modules())
    g = torch.Generator().manual_seed(0)
    rgb, ev = torch.rand(2, 3, 128, 128, generator=g), torch.rand(2, 4, 128, 128, generator=g)
    with torch.no_grad():
        a, b = model(rgb, ev), fast(rgb, ev)
    torch.testing.assert_close(a["landmarks"], b["landmarks"], atol=1e-5, rtol=0)
    torch.testing.assert_close(a["confidence"], b["confidence"], atol=1e-5, rtol=0)
