"""Names and sizes the synthetic engine accepts (cheap to import: used by the CLI parser)."""

LIGHT_LEVELS: dict[str, float] = {"normal": 1.0, "low": 0.03, "dark": 0.002}
"""Scene illumination relative to normal indoor light (~300 lux): low ~10 lux, dark ~0.6 lux
(a car cabin at night), where a 30 Hz RGB camera collects only ~25 electrons per pixel."""

SENSOR_SIZES = ((346, 260), (640, 480), (1280, 720))
"""Supported sensor sizes (width, height): DAVIS346, VGA, HD."""

MOTIONS = ("slow", "fast")
"""Head motion presets."""

RGB_CAMERAS: dict[str, dict[str, float]] = {
    "large-pixel": {},
    "small-pixel": {"sensitivity_e_per_s": 1.5e5, "full_well_e": 6000.0, "read_noise_e": 2.5},
}
"""RGB sensor presets (overrides of :class:`training.synth.camera.RGBCameraConfig`).

``large-pixel`` (default) is a DAVIS346-class APS (18.5 um pixels, low fill factor): ~1.5e6
electrons/s for a white surface at 300 lux through f/2, ~25 e- per pixel in a 30 ms frame at
``dark``. ``small-pixel`` is a ~3 um CMOS as in cabin cameras and webcams: 10x fewer electrons
(~2.5 e- per pixel at ``dark``, ~40 at ``low``), a smaller well and lower read noise; the RGB
camera of a rig that pairs a separate event camera with an ordinary RGB camera."""
