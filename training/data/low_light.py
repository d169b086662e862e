"""Photon-limited re-exposure of an RGB crop: what a small-pixel camera sees in the dark.

The synthetic engine's RGB camera (:mod:`training.synth.camera`) collects ~25 electrons per
pixel at its darkest light level (0.6 lux, 30 ms), enough for clean landmarks; a small-pixel
cabin camera at the same light collects a few. :func:`reexpose` turns a clean crop into such a
frame: the mean linear signal is set to ``electrons`` per pixel, each channel takes Poisson
shot noise and Gaussian read noise, the camera's gain restores the brightness and the result
is gamma-encoded and quantised to 8 bits. Noise is drawn per crop pixel (crop-level, not
sensor-level: a crop upsampled from a smaller face would carry coarser noise).
"""

from __future__ import annotations

import numpy as np

GAMMA = 2.2
"""Encoding exponent of the crops (as the engine's camera)."""


def reexpose(
    rgb: np.ndarray,
    electrons: float,
    rng: np.random.Generator,
    read_noise_e: float = 2.0,
) -> np.ndarray:
    """Re-expose a gamma-encoded ``(3, S, S)`` image in ``[0, 1]`` at ``electrons`` per pixel.

    Args:
        rgb: ``(3, S, S)`` (or any shape) float image in ``[0, 1]``, gamma-encoded.
        electrons: mean signal of the re-exposed frame, electrons per pixel (> 0).
        rng: numpy Generator for the noise.
        read_noise_e: read noise std, electrons.

    Returns:
        float32 image of the same shape in ``[0, 1]``, multiples of 1/255; its mean linear
        level matches the input's (the gain restores it) up to noise and clipping.
    """
    if not electrons > 0:
        raise ValueError(f"electrons must be > 0, got {electrons}")
    lin = np.clip(np.asarray(rgb, np.float64), 0.0, 1.0) ** GAMMA
    per_unit = electrons / max(float(lin.mean()), 1e-4)  # electrons for linear level 1
    e = rng.poisson(lin * per_unit).astype(np.float64)
    e += rng.normal(0.0, read_noise_e, e.shape)
    out = np.clip(e / per_unit, 0.0, 1.0) ** (1.0 / GAMMA)
    return (np.rint(out * 255.0) / 255.0).astype(np.float32)
