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


def _signatures(rng: np.random.Generator, batch: int) -> list[tuple]:
    ev = rng.random((batch, 4, 128, 128), dtype=np.float32)
    im = rng.random((batch, 3, 128, 128), dtype=np.float32)
    init = rng.uniform(0.2, 0.8, (batch, 16, 2)).astype(np.float32)
    return [
        (e, i, w, s)
        for e, i in ((ev, im), (ev, None), (None, im))
        for w, s in ((None, None), (None, 1), (init, 1), (init, 2))
    ]


@pytest.mark.parametrize("batch", [1, 2])
def test_traced_graphs_equal_the_eager_network(aligner: FaceAligner, batch: int) -> None:
    """Every signature (modalities x cold/warm x stages), traced (batch 1) or eager (batch 2)."""
    eager = FaceAligner(aligner.model, aligner.meta, "cpu", optimize=False, trace=False)
    rng = np.random.default_rng(batch)
    for ev, im, init, stages in _signatures(rng, batch):
        for _ in range(2):  # the first call traces, the second runs the graph
            got = aligner.predict(ev, im, init_landmarks=init, stages=stages)
        want = eager.predict(ev, im, init_landmarks=init, stages=stages)
        np.testing.assert_allclose(got.landmarks, want.landmarks, atol=1e-5)
        np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-5)
    graphs = aligner.graphs._graphs.items()
    traced = {k[0] for k, fn in graphs if isinstance(fn, torch.jit.ScriptModule)}
    assert traced == {"rgb", "event", "decode"}  # batch 1 (the other test case's too)
    assert not any(isinstance(fn, torch.jit.ScriptModule) for k, fn in graphs if k[1] == 2)


def test_a_graph_that_cannot_be_traced_runs_eagerly(
    aligner: FaceAligner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("tracer unavailable")

    fresh = FaceAligner(aligner.model, aligner.meta, "cpu", optimize=False)
    monkeypatch.setattr(torch.jit, "trace", broken)
    ev = np.random.default_rng(3).random((1, 4, 128, 128), dtype=np.float32)
    with caplog.at_level("WARNING"):
        got = fresh.predict(ev)
    assert "running it eagerly" in caplog.text and "tracer unavailable" in caplog.text
    want = FaceAligner(aligner.model, aligner.meta, "cpu", optimize=False, trace=False).predict(ev)
    np.testing.assert_array_equal(got.landmarks, want.landmarks)


def test_rgb_features_reused_give_the_fused_answer(aligner: FaceAligner) -> None:
    rng = np.random.default_rng(4)
    ev = rng.random((1, 4, 128, 128), dtype=np.float32)
    im = rng.random((1, 3, 128, 128), dtype=np.float32)
    init = rng.uniform(0.2, 0.8, (1, 16, 2)).astype(np.float32)
    feats = aligner.rgb_features(im)
    assert tuple(feats.shape) == (1, CFG.feature_dim, 32, 32)
    for kw in ({}, {"init_landmarks": init, "stages": 1}):
        a = aligner.predict(ev, rgb_features=feats, **kw)
        b = aligner.predict(ev, im, **kw)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        aligner.predict(ev, im, rgb_features=feats)
    with pytest.raises(ValueError, match="event input"):
        aligner.predict(None, rgb_features=feats)
    with pytest.raises(ValueError, match="batch sizes differ"):
        aligner.predict(np.repeat(ev, 2, 0), rgb_features=feats)


def test_warm_up_traces_every_one_crop_signature(aligner: FaceAligner) -> None:
    fresh = FaceAligner(aligner.model, aligner.meta, "cpu", optimize=False)
    fresh.warm_up(warm_stages=1, repeats=1)
    keys = list(fresh.graphs._graphs)
    assert sum(k[0] == "decode" for k in keys) == 6
    assert {k[0] for k in keys} == {"rgb", "event", "decode"}
