"""RGB camera model (training.synth.camera)."""

from __future__ import annotations

import numpy as np
import pytest

from training.synth.camera import (
    RGBCamera,
    RGBCameraConfig,
    auto_exposure,
    capture,
    decode,
    exposure_sample_times,
    light_scale,
    rgb_camera,
    to_gray,
)

SCENE = np.tile(np.linspace(0.05, 0.6, 64, dtype=np.float32), (48, 1))


def _snr_db(light: str, seed: int = 0, config: RGBCameraConfig | None = None) -> float:
    cam = RGBCamera(config or RGBCameraConfig(), light=light, seed=seed)
    exp, gain = cam.exposure_for(float(SCENE.mean()))
    shots = np.stack([decode(cam.capture(SCENE[None], exp, gain), gain) for _ in range(8)])
    signal = shots.mean(0)
    return float(20 * np.log10(signal.mean() / shots.std(0).mean()))


def test_low_light_lowers_snr() -> None:
    normal, low, dark = _snr_db("normal"), _snr_db("low"), _snr_db("dark")
    assert normal > low + 3 > dark + 6


def test_small_pixel_camera_is_as_clean_by_day_and_far_noisier_in_the_dark() -> None:
    large, small = rgb_camera("large-pixel"), rgb_camera("small-pixel")
    assert large == RGBCameraConfig(max_exposure_s=0.9 / 30)  # the engine's default camera
    assert _snr_db("normal", config=small) > 25 and _snr_db("normal", config=large) > 25
    # 10x fewer electrons: shot-noise-limited SNR 10 dB lower (read noise adds a little)
    assert _snr_db("dark", config=large) - _snr_db("dark", config=small) > 8
    assert _snr_db("dark", config=small) < 10
    with pytest.raises(ValueError, match="unknown RGB camera"):
        rgb_camera("pinhole")


def test_auto_exposure_lengthens_exposure_then_raises_gain() -> None:
    cfg = RGBCameraConfig()
    e_n, g_n = auto_exposure(0.3, light_scale("normal"), cfg)
    e_d, g_d = auto_exposure(0.3, light_scale("dark"), cfg)
    assert g_n == 1.0 and e_n < cfg.max_exposure_s
    assert e_d == cfg.max_exposure_s and g_d > 1.0


def test_output_is_quantised_and_deterministic() -> None:
    a = capture(SCENE[None], 0.01, 2.0, 1.0, np.random.default_rng(3))
    b = capture(SCENE[None], 0.01, 2.0, 1.0, np.random.default_rng(3))
    assert a.dtype == np.uint8 and a.shape == SCENE.shape
    assert a.tobytes() == b.tobytes()
    rgb = capture(np.stack([SCENE] * 3, -1)[None], 0.01, 1.0, 1.0, np.random.default_rng(0))
    assert rgb.shape == SCENE.shape + (3,)


def test_motion_blur_averages_subframes() -> None:
    cfg = RGBCameraConfig(read_noise_e=0.0, dark_current_e_per_s=0.0, gamma=1.0,
                          full_well_e=1e6, sensitivity_e_per_s=1e8)  # fmt: skip
    frames = np.zeros((4, 8, 8), np.float32)
    for k in range(4):
        frames[k, :, 2 * k : 2 * k + 2] = 1.0  # a bar moving right
    img = capture(frames, 0.005, 1.0, 1.0, np.random.default_rng(0), cfg)
    lit = img[:, :8].mean(0)
    assert np.all(lit[:8] > 0) and lit.max() < 0.3 * 255  # smeared, each column a quarter
    np.testing.assert_allclose(
        exposure_sample_times(1.0, 0.004, 4), [1.0005, 1.0015, 1.0025, 1.0035]
    )


def test_gray_and_light_levels() -> None:
    np.testing.assert_allclose(to_gray(np.ones((2, 2, 3))), 1.0, rtol=1e-6)
    assert light_scale("normal") > light_scale("low") > light_scale("dark") > 0
    with pytest.raises(ValueError):
        light_scale("twilight")
    with pytest.raises(ValueError):
        light_scale(-1.0)
