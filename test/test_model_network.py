"""CMFA network: shapes, gradients, modality paths, warm start, loss, one training step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facealign_ros.model.backbones import LiteBackbone, build_backbone
from facealign_ros.model.cmfa import CMFA, default_mean_shape, mean_shape_from, patch_grid
from facealign_ros.model.config import CMFAConfig, lite_config, paper_config
from facealign_ros.model.hrnet import HRNet
from facealign_ros.model.loss import (
    cmfa_loss,
    interocular_indices,
    normalized_error,
    stage_weights_for,
)

torch.set_num_threads(2)


def _inputs(cfg: CMFAConfig, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = cfg.input_size
    rgb = torch.rand(batch, cfg.rgb_channels, s, s, generator=g)
    ev = torch.rand(batch, cfg.event_channels, s, s, generator=g)
    return rgb, ev


def _target(cfg: CMFAConfig, batch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    base = torch.as_tensor(default_mean_shape(cfg.num_points))
    return (base + 0.03 * torch.randn(batch, cfg.num_points, 2, generator=g)).clamp(0, 1)


def _no_dropout(cfg: CMFAConfig) -> CMFAConfig:
    return cfg.replace(dropout=0.0, p_drop_rgb=0.0, p_drop_event=0.0)


# The lite network at 64 px with 20 points: same code paths, a fraction of the cost.
SMALL = lite_config(input_size=64, num_points=20, backbone_width=8)


@pytest.mark.parametrize("channels", [2, 5])
def test_lite_backbone_shape(channels: int) -> None:
    out = LiteBackbone(channels, 32, width=8)(torch.rand(2, channels, 64, 96))
    assert out.shape == (2, 32, 16, 24)


def test_hrnet_w18_shape_and_structure() -> None:
    net = HRNet(4, 256, width=18)
    assert [len(stage[0].branches) for stage in net.stages] == [2, 3, 4]
    assert net.head[0].in_channels == 18 + 36 + 72 + 144
    out = net(torch.rand(1, 4, 64, 64))
    assert out.shape == (1, 256, 16, 16)


@pytest.mark.parametrize(
    ("cfg", "batch"),
    [
        (lite_config(), 2),
        (lite_config(num_points=98, event_channels=5), 2),
        (paper_config(input_size=128, num_points=68), 1),
    ],
    ids=["lite68", "lite98-5ch", "paper-128px"],
)
def test_shapes_and_gradients(cfg: CMFAConfig, batch: int) -> None:
    torch.manual_seed(0)
    model = CMFA(cfg).train()
    rgb, ev = _inputs(cfg, batch)
    out = model(rgb, ev)
    n, s, layers = cfg.num_points, cfg.num_stages, cfg.num_layers
    assert out["landmarks"].shape == (batch, n, 2)
    assert out["confidence"].shape == (batch, n)
    assert out["stage_landmarks"].shape == (batch, s, layers, n, 2)
    assert out["stage_confidence_logits"].shape == (batch, s, n)
    assert torch.all((out["confidence"] >= 0) & (out["confidence"] <= 1))
    target = _target(cfg, batch)
    loss = cmfa_loss(out, target, cfg.stage_weights, interocular_indices(n)).total
    loss.backward()
    for name in ("rgb_backbone", "event_backbone", "decoder", "offset_head", "confidence_head"):
        grads = [p.grad for k, p in model.named_parameters() if k.startswith(name)]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    assert model.query_pos.grad is not None and model.event_pos.grad is not None


def test_paper_full_size_forward() -> None:
    cfg = paper_config()
    model = CMFA(cfg).eval()
    assert 15e6 < sum(p.numel() for p in model.parameters()) < 30e6
    with torch.no_grad():
        out = model(*_inputs(cfg, 1))
    assert out["stage_landmarks"].shape == (1, 3, 6, 98, 2)


def test_modality_paths_and_masks_agree() -> None:
    cfg = SMALL
    torch.manual_seed(0)
    model = CMFA(cfg).eval()
    rgb, ev = _inputs(cfg, 3)
    with torch.no_grad():
        fused = model(rgb, ev)["landmarks"]
        event_only = model(None, ev)["landmarks"]
        rgb_only = model(rgb, None)["landmarks"]
        mask = torch.tensor([True, False, True])
        mixed = model(rgb, ev, rgb_present=mask)["landmarks"]
        ev_mask = model(rgb, ev, event_present=torch.tensor([False, True, True]))["landmarks"]
    assert torch.isfinite(event_only).all() and torch.isfinite(rgb_only).all()
    assert not torch.allclose(fused, event_only)
    # A masked sample equals the same sample run with the modality absent, others are untouched.
    torch.testing.assert_close(mixed[1], event_only[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[[0, 2]], fused[[0, 2]], atol=1e-5, rtol=0)
    torch.testing.assert_close(ev_mask[0], rgb_only[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at least one"):
        model(None, None)


def test_training_mode_draws_modality_dropout() -> None:
    cfg = lite_config(p_drop_rgb=0.5, p_drop_event=0.4, dropout=0.0)
    model = CMFA(cfg).train()
    rgb_on, ev_on = model._modality_masks(4000, torch.device("cpu"), None, None)
    assert rgb_on is not None and ev_on is not None
    assert not torch.any(~rgb_on & ~ev_on)  # never both dropped
    assert abs((~rgb_on).float().mean().item() - 0.5) < 0.05
    assert abs((~ev_on).float().mean().item() - 0.4) < 0.05
    model.eval()
    assert model._modality_masks(4, torch.device("cpu"), None, None) == (None, None)


def test_warm_start_runs_finest_stages() -> None:
    cfg = paper_config(input_size=64, num_points=10, num_layers=1, backbone="lite")
    cfg = cfg.replace(backbone_width=8, feature_dim=16, d_model=32, num_heads=4, ffn_dim=32)
    model = CMFA(cfg).eval()
    assert model.stage_indices(None, warm=False) == [0, 1, 2]
    assert model.stage_indices(1, warm=True) == [2]
    assert model.stage_indices(2, warm=False) == [0, 1]
    with pytest.raises(ValueError, match="stages"):
        model.stage_indices(4, warm=False)
    rgb, ev = _inputs(cfg, 2)
    init = _target(cfg, 2)
    with torch.no_grad():
        out = model(rgb, ev, init_landmarks=init, stages=1)
    assert out["stage_landmarks"].shape == (2, 1, 1, 10, 2)
    with pytest.raises(ValueError, match="init_landmarks"):
        model(rgb, ev, init_landmarks=init[:1])
    # At initialisation a stage stays near its start (offset 0.5 of the box): the warm start is
    # used, not the mean shape. Finest half-width: 2 cells of 16 -> 0.125 box side.
    assert (out["landmarks"] - init).abs().max() < 0.0625 + 0.02


def test_patch_grid_centres_and_clamps() -> None:
    anchors = torch.tensor([[[0.5, 0.5], [0.0, 1.0]]])
    grid, lo, length = patch_grid(anchors, 0.25, torch.linspace(0, 1, 3))
    assert grid.shape == (1, 2, 9, 2)
    torch.testing.assert_close(grid[0, 0, 4], torch.tensor([0.0, 0.0]))  # centre -> grid 0
    torch.testing.assert_close(grid[0, 0, 1], torch.tensor([0.0, -0.5]))  # x varies fastest
    torch.testing.assert_close(lo[0, 1], torch.tensor([0.0, 0.75]))
    torch.testing.assert_close(length[0, 1], torch.tensor([0.25, 0.25]))


def test_normalized_error_known_values() -> None:
    target = torch.tensor([[[0.0, 0.0], [0.5, 0.0], [0.2, 0.2]]])  # eyes 0 and 1: iod 0.5
    pred = target.clone()
    pred[0, 2] += torch.tensor([0.03, 0.04])  # error 0.05 -> 0.1 iod
    err = normalized_error(pred, target, (0, 1))
    torch.testing.assert_close(err, torch.tensor([[0.0, 0.0, 0.1]]))
    err5 = normalized_error(pred[:, None, None].expand(1, 2, 3, 3, 2), target, (0, 1))
    assert err5.shape == (1, 2, 3, 3)


def test_stage_weights_and_indices() -> None:
    assert stage_weights_for((0.2, 0.3, 0.5), 3) == [0.2, 0.3, 0.5]
    assert stage_weights_for((0.2, 0.3, 0.5), 1) == pytest.approx([1.0])
    assert interocular_indices(98) == (60, 72)
    assert interocular_indices(68) == (36, 45)
    with pytest.raises(ValueError):
        interocular_indices(5)


def test_mean_shape_helpers() -> None:
    lms = np.random.default_rng(0).uniform(0.2, 0.8, (10, 7, 2))
    shape = mean_shape_from(lms)
    assert shape.shape == (7, 2) and shape.dtype == np.float32
    model = CMFA(lite_config(num_points=7), mean_shape=shape)
    np.testing.assert_allclose(model.mean_shape.numpy(), shape)
    with pytest.raises(ValueError, match="mean_shape"):
        CMFA(lite_config(num_points=8), mean_shape=shape)


def test_one_training_step_reduces_loss() -> None:
    torch.manual_seed(0)
    cfg = _no_dropout(SMALL.replace(num_points=68))
    model = CMFA(cfg).train()  # BatchNorm uses batch statistics: deterministic for a fixed batch
    rgb, ev = _inputs(cfg, 4)
    target = _target(cfg, 4)
    eyes = interocular_indices(cfg.num_points)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)  # Adam's first steps overshoot at 1e-3
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = cmfa_loss(model(rgb, ev), target, cfg.stage_weights, eyes).total
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(cmfa_loss(model(rgb, ev), target, cfg.stage_weights, eyes).total.item())
    assert losses[1] < losses[0]
    assert losses[-1] < losses[0]


def test_build_backbone_matches_config() -> None:
    assert isinstance(build_backbone(paper_config(), 3), HRNet)
    assert isinstance(build_backbone(lite_config(), 3), LiteBackbone)


def test_loss_on_negative_crops_targets_zero_confidence_and_skips_alignment() -> None:
    b, s, layers, n = 4, 2, 2, 70
    g = torch.Generator().manual_seed(0)
    target = _target(lite_config(num_points=n), b)
    lms = target[:, None, None] + 0.01 * torch.randn(b, s, layers, n, 2, generator=g)
    logits = torch.randn(b, s, n, generator=g)
    out = {"stage_landmarks": lms, "stage_confidence_logits": logits}
    eyes = interocular_indices(n)
    everyone = cmfa_loss(out, target, (0.4, 0.6), eyes)  # type: ignore[arg-type]
    same = cmfa_loss(out, target, (0.4, 0.6), eyes, face_present=torch.ones(b, dtype=torch.bool))  # type: ignore[arg-type]
    assert torch.equal(everyone.total, same.total)
    face = torch.tensor([True, True, False, False])
    far = lms.clone()
    far[~face] += 0.5  # negatives' landmarks are meaningless: they must not count
    mixed = cmfa_loss({**out, "stage_landmarks": far}, target, (0.4, 0.6), eyes, face_present=face)  # type: ignore[arg-type]
    pos = cmfa_loss(
        {"stage_landmarks": lms[face], "stage_confidence_logits": logits[face]},  # type: ignore[arg-type]
        target[face],
        (0.4, 0.6),
        eyes,
    )
    torch.testing.assert_close(mixed.align, pos.align)
    # the negatives' confidence term is BCE towards 0: lower logits lower it
    low = logits.clone()
    low[~face] = -10.0
    lowered = cmfa_loss(
        {"stage_landmarks": far, "stage_confidence_logits": low},
        target,
        (0.4, 0.6),
        eyes,
        face_present=face,
    )  # type: ignore[arg-type]
    assert lowered.confidence < mixed.confidence
