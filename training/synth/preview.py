"""Contact sheet of the synthetic engine: RGB, event frames and GT landmarks per light and person.

Rows are identities (scene seeds), column pairs are light levels; each pair shows the RGB frame
and an event frame (the events of the last ``window_ms`` before the frame stamp: ON red,
OFF blue on grey), both with the GT landmarks drawn (green visible, red occluded; pupils in
yellow) and the head axes. The same seed is used across light levels, so a row shows one
person in the same pose under each light.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.synth.camera import LIGHT_LEVELS
from training.synth.engine import FrameOutput, SensorConfig, generate
from training.synth.scene import SceneConfig


def event_frame(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 picture of events: grey background, ON red, OFF blue (counts saturate)."""
    on = np.zeros((height, width), np.float32)
    off = np.zeros((height, width), np.float32)
    p = events["p"] != 0
    np.add.at(on, (events["y"][p], events["x"][p]), 1.0)
    np.add.at(off, (events["y"][~p], events["x"][~p]), 1.0)
    img = np.full((height, width, 3), 128.0, np.float32)
    a_on, a_off = np.minimum(on / 2.0, 1.0), np.minimum(off / 2.0, 1.0)
    img = img * (1 - a_on[..., None]) + a_on[..., None] * np.array([255, 40, 40])
    img = img * (1 - a_off[..., None]) + a_off[..., None] * np.array([40, 90, 255])
    return img.astype(np.uint8)


def draw_gt(image: np.ndarray, uv: np.ndarray, visible: np.ndarray, axes: np.ndarray | None = None,
            label: str = "") -> Image.Image:  # fmt: skip
    """Draw 70 landmarks (and optional (4, 2) head-axes pixels: origin, x, y, z) on an image."""
    im = Image.fromarray(image)
    d = ImageDraw.Draw(im)
    if axes is not None:
        for end, col in zip(axes[1:], ((255, 0, 0), (0, 255, 0), (0, 128, 255)), strict=True):
            d.line([tuple(axes[0]), tuple(end)], fill=col, width=2)
    for i, ((u, v), vis) in enumerate(zip(uv, visible, strict=True)):
        col = ((255, 230, 0) if i >= 68 else (0, 255, 0)) if vis else (255, 0, 0)
        d.ellipse([u - 1.5, v - 1.5, u + 1.5, v + 1.5], fill=col)
    if label:
        d.rectangle([0, 0, 7 * len(label) + 6, 14], fill=(0, 0, 0))
        d.text((3, 1), label, fill=(255, 255, 255))
    return im


def _panels(fo: FrameOutput, events: np.ndarray, config: SceneConfig, camera_k: np.ndarray,
            tag: str) -> tuple[Image.Image, Image.Image]:  # fmt: skip
    iv = fo.interval
    axes = None
    if iv.rotation is not None and iv.translation is not None:
        origin = iv.translation
        pts = origin + 0.06 * iv.rotation.T  # rows: head x, y, z axes tips (camera frame)
        p3 = np.vstack([origin, pts])
        axes = (p3 @ camera_k.T)[:, :2] / p3[:, 2:]
    w, h = config.width, config.height
    n = len(iv.uv) if config.face else 0  # no landmarks drawn in an empty scene
    uv, vis = iv.uv[:n], iv.visible[:n]
    rgb = draw_gt(fo.image, uv, vis, axes, f"{tag} RGB")
    n_ev = len(events)
    evf = draw_gt(event_frame(events, w, h), uv, vis, None, f"{tag} events {n_ev}")
    return rgb, evf


def contact_sheet(
    path: str | Path,
    seeds: tuple[int, ...] = (0, 1, 2, 3),
    lights: tuple[str, ...] = tuple(LIGHT_LEVELS),
    base: SceneConfig | None = None,
    seconds: float = 0.4,
    window_ms: float = 20.0,
    workers: int = 0,
) -> Path:
    """Render the contact sheet PNG.

    Args:
        path: output PNG path.
        seeds: scene seeds, one row each.
        lights: light levels, one column pair each.
        base: scene parameters other than seed, light and duration (default SceneConfig()).
        seconds: simulated time per cell; the last frame is shown.
        window_ms: event window shown, ending at the frame stamp, ms.
        workers: rendering processes per cell.

    Returns:
        The written path.
    """
    from training.synth.render import PinholeCamera

    base = base or SceneConfig()
    rows = []
    for seed in seeds:
        cells = []
        for light in lights:
            cfg = dataclasses.replace(base, seed=seed, light=light, seconds=seconds)
            outs = list(generate(cfg, SensorConfig(), workers))
            last = outs[-1]
            ev = np.concatenate([o.events for o in outs[-3:]])
            t1 = last.interval.stamp_ns
            ev = ev[(ev["t"] > t1 - int(window_ms * 1e6)) & (ev["t"] <= t1)]
            k = PinholeCamera.for_sensor(cfg.width, cfg.height, cfg.hfov_deg).K
            cells += _panels(last, ev, cfg, k, f"seed {seed} {light}")
        rows.append(cells)
    w, h = rows[0][0].size
    sheet = Image.new("RGB", (w * len(rows[0]) + 2 * (len(rows[0]) - 1), h * len(rows)
                              + 2 * (len(rows) - 1)), (255, 255, 255))  # fmt: skip
    for r, cells in enumerate(rows):
        for c, im in enumerate(cells):
            sheet.paste(im, (c * (w + 2), r * (h + 2)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
