"""Photon-limited re-exposure of RGB crops (``training.data.low_light``) and its augmentation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from training.data import AugmentConfig
from training.data.low_light import GAMMA, reexpose


@pytest.mark.parametrize("electrons", [2.0, 10.0, 50.0])
def test_noise_is_shot_plus_read_noise_at_the_mean_level(electrons: float) -> None:
    level = 0.4  # gamma-encoded grey
    flat = np.full((3, 64, 64), level, np.float32)
    out = reexpose(flat, electrons, np.random.default_rng(0), read_noise_e=2.0)
    assert out.shape == flat.shape and out.dtype == np.float32
    assert np.allclose(out * 255, np.rint(out * 255), atol=1e-3)  # 8-bit levels
    lin = out.astype(np.float64) ** GAMMA
    want_rel_std = np.sqrt(electrons + 4.0) / electrons  # Poisson + read noise, relative
    got_rel_std = lin.std() / level**GAMMA
    # clipping at 0 trims the noise of the very darkest setting a little
    assert got_rel_std == pytest.approx(want_rel_std, rel=0.2 if electrons > 2 else 0.35)
    assert lin.mean() == pytest.approx(level**GAMMA, rel=0.25 if electrons > 2 else 0.5)


def test_many_electrons_leave_the_image_as_it_was_and_the_draw_is_seeded() -> None:
    img = np.random.default_rng(1).uniform(0.2, 0.9, (3, 16, 16)).astype(np.float32)
    bright = reexpose(img, 1e6, np.random.default_rng(2))
    assert np.abs(bright - img).max() < 3 / 255
    a = reexpose(img, 3.0, np.random.default_rng(5))
    assert np.array_equal(a, reexpose(img, 3.0, np.random.default_rng(5)))
    assert np.abs(a - img).mean() > 0.05  # a few electrons: a visibly noisy frame
    with pytest.raises(ValueError, match="electrons"):
        reexpose(img, 0.0, np.random.default_rng(0))


def test_augmentation_re_exposes_when_asked_and_checks_its_range() -> None:
    from training.data.dataset import _augment_rgb

    plain = AugmentConfig(
        rgb_gain=1.0, rgb_gamma=1.0, rgb_noise_max=0, rgb_blur_prob=0, rgb_white_balance=0,
        rgb_saturation=0, rgb_gray_prob=0,
    )  # fmt: skip
    img = np.full((3, 32, 32), 0.5, np.float32)
    same = _augment_rgb(img, np.random.default_rng(0), plain)
    assert np.allclose(same, img, atol=1e-6)
    dark = replace(plain, rgb_low_light_prob=1.0, rgb_low_light_electrons=(1.0, 1.0))
    noisy = _augment_rgb(img, np.random.default_rng(0), dark)
    assert noisy.std() > 0.1  # one electron per pixel
    assert AugmentConfig.from_dict({"rgb_low_light_electrons": [2, 8]}).rgb_low_light_electrons == (
        2.0,
        8.0,
    )
    for bad in ({"rgb_low_light_electrons": [0, 8]}, {"rgb_low_light_electrons": [9, 8]},
                {"rgb_low_light_prob": 1.5}):  # fmt: skip
        with pytest.raises(ValueError, match="AugmentConfig"):
            AugmentConfig.from_dict(bad)
