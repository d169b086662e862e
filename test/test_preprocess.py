"""The shared preprocessing path: event and RGB crops."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_ros.events import make_events
from facealign_ros.face.crop import Box, crop_affine, transform_points
from facealign_ros.face.preprocess import InputSpec, event_input, rgb_input

W, H = 346, 260
T_END = 1_000_000_000


def diffuse_events(n: int, box: Box, seed: int = 0) -> np.ndarray:
    """Make n events spread over the inner half of the box (no pixel gets many)."""
    rng = np.random.default_rng(seed)
    h = box.side / 4
    x = rng.integers(int(box.cx - h), int(box.cx + h), n)
    y = rng.integers(int(box.cy - h), int(box.cy + h), n)
    t = np.sort(rng.integers(T_END - 20_000_000, T_END, n))
    return make_events(t, x, y, rng.integers(0, 2, n))


@pytest.mark.parametrize("side", [32.0, 64.0, 200.0])  # up-sampling, 1:1, area down-sampling
def test_count_density_is_preserved_across_scales(side: float) -> None:
    spec = InputSpec(size=64, representations=("count",), count_scale=1.0)
    box = Box(170.0, 130.0, side)
    A = crop_affine(box, spec.size)
    n = 400
    out = event_input(diffuse_events(n, box), A, spec, W, H, T_END)
    assert out.shape == (2, 64, 64)
    s = spec.size / side  # crop pixels per source pixel
    assert out.sum() / s**2 == pytest.approx(n, rel=0.1)


def test_event_lands_at_the_mapped_crop_position() -> None:
    spec = InputSpec(size=64, representations=("time_surface",))
    box = Box(100.0, 80.0, 48.0)
    A = crop_affine(box, spec.size, angle_deg=20.0)
    ev = make_events(np.full(30, T_END - 1000), np.full(30, 110), np.full(30, 70), np.ones(30))
    out = event_input(ev, A, spec, W, H, T_END)
    iy, ix = np.unravel_index(np.argmax(out[1]), out[1].shape)
    assert np.allclose([ix, iy], transform_points(np.array([110.0, 70.0]), A), atol=1.5)
    assert out[0].max() == 0  # no OFF events


def test_window_and_channel_layout() -> None:
    spec = InputSpec(size=32, representations=("event_frame", "count", "voxel"), voxel_bins=4)
    assert spec.event_channels == 1 + 2 + 4
    A = crop_affine(Box(170.0, 130.0, 40.0), 32)
    old = make_events([T_END - 10**9], [170], [130], [1])  # outside the 30 ms window
    out = event_input(old, A, spec, W, H, T_END)
    assert out.shape == (7, 32, 32)
    assert np.allclose(out[0], 0.5) and np.allclose(out[1:], 0)


def test_crop_outside_the_sensor_is_empty() -> None:
    spec = InputSpec(size=16)
    A = crop_affine(Box(-500.0, -500.0, 40.0), 16)
    out = event_input(diffuse_events(50, Box(100.0, 100.0, 40.0)), A, spec, W, H, T_END)
    assert out.shape == (spec.event_channels, 16, 16)
    assert np.allclose(out[0], 0.5) and np.allclose(out[1:], 0)


def test_rgb_input_normalisation_and_mono() -> None:
    spec = InputSpec(size=16)
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = 255
    A = crop_affine(Box(170.0, 130.0, 40.0), 16)
    out = rgb_input(img, A, spec)
    assert out.shape == (3, 16, 16) and out.dtype == np.float32
    assert np.allclose(out[0], 1.0) and np.allclose(out[1:], 0.0)
    mono = rgb_input(np.full((H, W), 128, np.uint8), A, spec)
    assert mono.shape == (3, 16, 16)
    with pytest.raises(ValueError, match="expected"):
        rgb_input(np.zeros((H, W, 4), np.uint8), A, spec)


def test_input_spec_validation_and_round_trip() -> None:
    spec = InputSpec(size=96, representations=("voxel",), voxel_bins=5)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown keys"):
        InputSpec.from_dict({"size": 64, "colour": True})
    with pytest.raises(ValueError, match="representations"):
        InputSpec(representations=("optical_flow",))
    with pytest.raises(ValueError, match="size"):
        InputSpec(size=4)
    for field in ("window_ms", "box_scale", "tau_fraction", "count_scale"):
        for bad in (0.0, -1.0, float("inf"), float("nan"), "30"):
            with pytest.raises(ValueError, match=f"InputSpec.{field} must be a finite number"):
                InputSpec(**{field: bad})
