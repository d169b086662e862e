"""Names and sizes the synthetic engine accepts (cheap to import: used by the CLI parser)."""

LIGHT_LEVELS: dict[str, float] = {"normal": 1.0, "low": 0.03, "dark": 0.002}
"""Scene illumination relative to normal indoor light (~300 lux): low ~10 lux, dark ~0.6 lux
(a car cabin at night), where a 30 Hz RGB camera collects only ~25 electrons per pixel."""

SENSOR_SIZES = ((346, 260), (640, 480), (1280, 720))
"""Supported sensor sizes (width, height): DAVIS346, VGA, HD."""

MOTIONS = ("slow", "fast")
"""Head motion presets."""
