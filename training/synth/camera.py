"""RGB camera model: auto exposure, motion blur, gain, shot/read noise, gamma, uint8 output.

The scene is given as float32 *linear* intensity (1.0 = a white surface under normal light);
a light level scales it before it reaches the sensor (and the event sensor, which sees the
same photons: pass ``light_scale(level) * intensity`` to :mod:`training.synth.esim`).
Sensor model per pixel: electrons ``~ Poisson(irradiance * sensitivity * exposure + dark)``
plus Gaussian read noise, scaled by the gain to full scale, gamma encoded and quantised.
In low light auto exposure lengthens the exposure (more motion blur) and raises the gain
(more visible noise), as real cameras do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.synth.options import LIGHT_LEVELS, RGB_CAMERAS


def light_scale(level: str | float) -> float:
    """Illumination factor of a light level name (``normal``, ``low``, ``dark``) or a number."""
    if isinstance(level, str):
        if level not in LIGHT_LEVELS:
            raise ValueError(f"unknown light level {level!r}; choose one of {list(LIGHT_LEVELS)}")
        return LIGHT_LEVELS[level]
    if not level > 0:
        raise ValueError(f"light level must be positive, got {level}")
    return float(level)


@dataclass(frozen=True)
class RGBCameraConfig:
    """Sensor and auto-exposure parameters.

    Attributes:
        fps: frame rate, Hz.
        sensitivity_e_per_s: electrons per second for linear intensity 1 under normal light.
        full_well_e: electrons mapped to full scale at gain 1.
        read_noise_e: read noise std, electrons.
        dark_current_e_per_s: dark current, electrons per second.
        min_exposure_s: shortest exposure, seconds.
        max_exposure_s: longest exposure, seconds (below the frame period).
        max_gain: highest analogue gain.
        target_level: auto-exposure target of the mean linear signal (fraction of full scale).
        gamma: output encoding exponent (1 / gamma is applied); 1 for linear output.
    """

    fps: float = 30.0
    sensitivity_e_per_s: float = 1.5e6
    full_well_e: float = 10000.0
    read_noise_e: float = 4.0
    dark_current_e_per_s: float = 50.0
    min_exposure_s: float = 1.0e-4
    max_exposure_s: float = 0.03
    max_gain: float = 16.0
    target_level: float = 0.18
    gamma: float = 2.2


def rgb_camera(name: str, fps: float = 30.0) -> RGBCameraConfig:
    """The :data:`~training.synth.options.RGB_CAMERAS` preset ``name`` at ``fps``.

    The exposure stays below 0.9 / fps, as with the engine's default camera.
    """
    if name not in RGB_CAMERAS:
        raise ValueError(f"unknown RGB camera {name!r}; choose one of {list(RGB_CAMERAS)}")
    return RGBCameraConfig(fps=fps, max_exposure_s=0.9 / fps, **RGB_CAMERAS[name])


def auto_exposure(
    mean_intensity: float, light: float, config: RGBCameraConfig = RGBCameraConfig()
) -> tuple[float, float]:
    """Choose exposure and gain that bring the mean signal to the target level.

    Exposure is raised first (up to ``max_exposure_s``), then gain (up to ``max_gain``).

    Args:
        mean_intensity: mean linear scene intensity (before the light level).
        light: illumination factor (:func:`light_scale`).
        config: camera parameters.

    Returns:
        ``(exposure_s, gain)``.
    """
    rate = max(mean_intensity * light * config.sensitivity_e_per_s, 1e-9)
    want_e = config.target_level * config.full_well_e
    exposure = float(np.clip(want_e / rate, config.min_exposure_s, config.max_exposure_s))
    gain = float(np.clip(want_e / (rate * exposure), 1.0, config.max_gain))
    return exposure, gain


def exposure_sample_times(t_start_s: float, exposure_s: float, n: int) -> np.ndarray:
    """Mid-points of ``n`` equal slices of the exposure window ``[t_start, t_start + exp]``.

    Args:
        t_start_s: exposure start, seconds.
        exposure_s: exposure duration, seconds.
        n: number of sub-frames to render and average (motion blur).

    Returns:
        (n,) float64 times, seconds.
    """
    return t_start_s + exposure_s * (np.arange(n) + 0.5) / n


def blur_samples(exposure_s: float, max_speed_px_s: float, max_px: float = 1.0) -> int:
    """Sub-frames needed so that motion within one exposure is sampled every ``max_px`` px."""
    return max(1, int(np.ceil(exposure_s * max_speed_px_s / max_px)))


def capture(
    subframes: np.ndarray,
    exposure_s: float,
    gain: float,
    light: float,
    rng: np.random.Generator,
    config: RGBCameraConfig = RGBCameraConfig(),
) -> np.ndarray:
    """Expose, add noise, encode and quantise one frame.

    Args:
        subframes: (K, H, W) or (K, H, W, C) linear scene intensity sampled over the exposure
            window; their mean is the motion-blurred irradiance.
        exposure_s: exposure time, seconds.
        gain: analogue gain (>= 1).
        light: illumination factor.
        rng: numpy Generator for the noise.
        config: camera parameters.

    Returns:
        (H, W) or (H, W, C) uint8 gamma-encoded image.
    """
    irr = np.mean(np.asarray(subframes, np.float32), axis=0) * np.float32(light)
    mean_e = irr * (config.sensitivity_e_per_s * exposure_s)
    mean_e += config.dark_current_e_per_s * exposure_s
    electrons = _shot_noise(np.clip(mean_e, 0, 4 * config.full_well_e), rng)
    electrons = np.minimum(electrons, config.full_well_e)
    read = rng.standard_normal(electrons.shape, dtype=np.float32)
    electrons += read * np.float32(config.read_noise_e)
    signal = np.clip(electrons * np.float32(gain / config.full_well_e), 0.0, 1.0)
    if config.gamma != 1.0:
        signal = signal ** np.float32(1.0 / config.gamma)
    return np.rint(signal * 255.0).astype(np.uint8)


def _shot_noise(mean_e: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson electron counts; the normal approximation above 100 e- (3x faster, same moments)."""
    flat = mean_e.reshape(-1)
    out = np.empty(flat.shape, np.float32)
    big = flat > 100.0
    m = flat[big]
    out[big] = m + np.sqrt(m) * rng.standard_normal(m.shape[0], dtype=np.float32)
    out[~big] = rng.poisson(flat[~big])
    return np.rint(out).reshape(mean_e.shape)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Linear RGB (..., 3) to linear luminance (...) with Rec. 709 weights (float32)."""
    w = np.array([0.2126, 0.7152, 0.0722], np.float32)
    return np.asarray(image, np.float32) @ w


def decode(
    image: np.ndarray, gain: float, config: RGBCameraConfig = RGBCameraConfig()
) -> np.ndarray:
    """Invert gamma and gain: uint8 frame back to an estimate of linear signal (float32)."""
    s = (np.asarray(image, np.float32) / 255.0) ** np.float32(config.gamma)
    return s / np.float32(gain)


class RGBCamera:
    """Stateful RGB camera: seeded noise and smoothed auto exposure.

    Args:
        config: sensor parameters.
        light: light level name or illumination factor.
        seed: seed of the noise Generator (or a Generator).
        ae_smoothing: weight of the new auto-exposure estimate per frame (1 = no smoothing).
    """

    def __init__(
        self,
        config: RGBCameraConfig = RGBCameraConfig(),
        light: str | float = "normal",
        seed: int | np.random.Generator = 0,
        ae_smoothing: float = 0.3,
    ) -> None:
        self.config, self.light = config, light_scale(light)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.ae_smoothing = ae_smoothing
        self._log_rate: float | None = None

    def exposure_for(self, mean_intensity: float) -> tuple[float, float]:
        """Update the auto exposure with the scene's mean linear intensity; ``(exp_s, gain)``."""
        x = float(np.log(max(mean_intensity, 1e-6)))
        a = self.ae_smoothing
        self._log_rate = x if self._log_rate is None else (1 - a) * self._log_rate + a * x
        return auto_exposure(float(np.exp(self._log_rate)), self.light, self.config)

    def capture(self, subframes: np.ndarray, exposure_s: float, gain: float) -> np.ndarray:
        """Capture one frame from sub-frames; see :func:`capture`."""
        return capture(subframes, exposure_s, gain, self.light, self.rng, self.config)
