"""SSMER dense term: point grids through the views' crops, the per-point loss, the pretrainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_ssmer import _pretrainer, bags  # noqa: F401 (the fixture)

from facealign_ros.events import EVENT_DTYPE
from facealign_ros.face.crop import Box
from facealign_ros.face.preprocess import InputSpec, channel_slices
from facealign_ros.model.config import lite_config
from training.ssmer.loop import ResumeError, read_ssmer_metadata
from training.ssmer.model import SimSiam, dense_simsiam_loss
from training.ssmer.sources import Window
from training.ssmer.views import ViewAugment, box_grid, make_views, make_views_with_points

W, H = 160, 120


def test_box_grid_and_points_of_an_unaugmented_view() -> None:
    box = Box(80.0, 60.0, 60.0)
    np.testing.assert_allclose(box_grid(box, 1), [[80.0, 60.0]])
    g = box_grid(box, 2)  # 0.8 of the side: +-12 px around the centre, x fastest
    np.testing.assert_allclose(g, [[68, 48], [92, 48], [68, 72], [92, 72]])
    still = ViewAugment(0, 0, 0, 0, 1.0, 0, 0, 0)
    win = Window(np.zeros(0, EVENT_DTYPE), 30_000_000, box, W, H)
    _, pts = make_views_with_points(win, InputSpec(size=32), ("voxel", "all"), still, rng(0), 2)
    # the crop spans the box: +-12 px of a 60 px box is +-0.4 of grid_sample's [-1, 1]
    want = [[-0.4, -0.4], [0.4, -0.4], [-0.4, 0.4], [0.4, 0.4]]
    np.testing.assert_allclose(pts, [want, want], atol=1e-6)
    mirrored = ViewAugment(0, 0, 0, 1.0, 1.0, 0, 0, 0)
    _, pts = make_views_with_points(win, InputSpec(size=32), ("voxel", "all"), mirrored, rng(0), 2)
    np.testing.assert_allclose(pts[:, :, 0], -np.asarray([want, want])[:, :, 0], atol=1e-6)
    with pytest.raises(ValueError, match="grid"):
        box_grid(box, 0)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("seed", range(6))
def test_a_point_lands_where_its_events_are_drawn(seed: int) -> None:
    """Events at one sensor pixel show up in every augmented view at the returned point."""
    box = Box(80.0, 60.0, 48.0)
    ev = np.zeros(400, EVENT_DTYPE)
    ev["t"] = np.linspace(1_000, 29_000, 400).astype(np.int64) * 1000
    ev["x"], ev["y"], ev["p"] = 80, 60, 1  # the box centre = box_grid(box, 1)
    win = Window(ev, 30_000_000, box, W, H)
    spec = InputSpec(size=32)
    aug = ViewAugment(scale=0.25, shift=0.08, rotation_deg=30, flip_prob=0.5, gain=1.3,
                      blur_prob=0, event_drop_max=0, event_noise_max=0)  # fmt: skip
    views, pts = make_views_with_points(win, spec, ("event_frame", "all"), aug, rng(seed), 1)
    again = make_views(win, spec, ("event_frame", "all"), aug, rng(seed))
    np.testing.assert_array_equal(views, again)  # the same draws as without points
    frame = channel_slices(spec)["event_frame"]
    for v in range(2):
        signal = np.abs(views[v][frame] - 0.5).sum(axis=0)  # neutral event frame is 0.5
        y, x = np.unravel_index(np.argmax(signal), signal.shape)
        px = (pts[v, 0] + 1) * 32 / 2 - 0.5  # grid_sample coords -> crop pixels
        assert abs(px[0] - x) <= 1.0 and abs(px[1] - y) <= 1.0, (v, px, (x, y))


def test_dense_loss_known_answers_and_masking() -> None:
    torch.manual_seed(0)
    v, b, k, d = 3, 2, 5, 8
    same = torch.randn(1, b, k, d).expand(v, b, k, d)
    inside = torch.zeros(v, b, k, 2)
    assert float(dense_simsiam_loss(same, 2 * same, inside)) == pytest.approx(-3.0, abs=1e-5)
    # disagreeing points outside one view of every pair do not count
    dz = same.clone()
    dz[0, :, 0] = -dz[0, :, 0]
    pts = inside.clone()
    pts[0, :, 0] = 1.5
    assert float(dense_simsiam_loss(dz, dz, pts)) == pytest.approx(-3.0, abs=1e-5)
    assert float(dense_simsiam_loss(dz, dz, inside)) > -3.0 + 0.1  # counted, they disagree
    assert float(dense_simsiam_loss(dz, dz, torch.full((v, b, k, 2), 2.0))) == 0.0
    z = torch.randn(v, b, k, d, requires_grad=True)
    p = torch.randn(v, b, k, d, requires_grad=True)
    dense_simsiam_loss(z, p, inside).backward()
    assert z.grad is None and p.grad is not None  # stop-gradient on the targets


def test_simsiam_dense_heads_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    net = lite_config(input_size=32, event_channels=6, backbone_width=4, feature_dim=16)
    model = SimSiam(net, 16, 8, dense_dim=12)
    views = torch.randn(4, 3, 6, 32, 32)
    pts = torch.rand(4, 3, 9, 2) * 2 - 1
    z, p, h, dz, dp = model(views, pts)
    assert z.shape == (3, 4, 16) and h.shape == (3, 4, 16)
    assert dz.shape == dp.shape == (3, 4, 9, 12)
    dense_simsiam_loss(dz, dp, pts.transpose(0, 1)).backward()
    assert next(model.encoder.parameters()).grad.abs().sum() > 0  # reaches the encoder
    assert len(model(views)) == 3
    with pytest.raises(ValueError, match="dense"):
        SimSiam(net, 16, 8)(views, pts)


def test_pretrain_with_the_dense_term_records_it_and_resumes_exactly(
    bags: list[Path],  # noqa: F811 (the fixture)
    tmp_path: Path,
    one_torch_thread: None,
) -> None:
    dense = ["model.dense_weight=1.0", "model.dense_grid=3", "model.dense_dim=8"]
    ref = _pretrainer(bags, tmp_path / "a", "run.checkpoint_every=2", *dense).fit()
    for line in ref.history:
        assert np.isfinite(line["loss"]) and -1.01 <= line["dense_loss_per_pair"] <= 1.01
    meta = read_ssmer_metadata(ref.encoder_path)
    assert meta["dense"] == {"weight": 1.0, "grid": 3, "dim": 8}

    def kill_at_3(step: int, scalars: object) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _pretrainer(bags, tmp_path / "b", "run.checkpoint_every=2", *dense, on_step=kill_at_3).fit()
    with pytest.raises(ResumeError, match="dense"):  # the same folder without the dense term
        _pretrainer(bags, tmp_path / "b", "run.checkpoint_every=2").fit()
    resumed = _pretrainer(bags, tmp_path / "b", "run.checkpoint_every=2", *dense).fit()
    assert resumed.step == ref.step and resumed.digest == ref.digest


@pytest.mark.parametrize(
    "bad",
    ["model.dense_weight=-1", "model.dense_weight=.inf", "model.dense_grid=0",
     "model.dense_grid=100000", "model.dense_dim=4", "data.stride_ms=.inf",
     "data.stride_ms=1e-9", "optim.lr=.nan"],
)  # fmt: skip
def test_bad_dense_settings_are_config_errors(bad: str) -> None:
    from training.ssmer.config import load_ssmer_config
    from training.trainer.config import ConfigError

    root = Path(__file__).resolve().parents[1]
    with pytest.raises(ConfigError, match=bad.split("=")[0].split(".")[1]):
        load_ssmer_config(root / "training" / "configs" / "ssmer_lite.yaml", [bad])
