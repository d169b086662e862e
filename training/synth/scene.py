"""One synthetic scene: a seeded person, motion, props and light, rendered interval by interval.

A :class:`Scene` is fully determined by its :class:`SceneConfig` (seed included): identity
(base head, shape, skin tone, light), head trajectory, camera shake, expressions (blinks,
mouth, brows), eyewear, background with moving clutter and foreground occluders, and lighting
flicker. :meth:`Scene.interval` renders one RGB frame interval ``((k-1)/fps, k/fps]`` on its own
(stateless, so intervals can be rendered by different worker processes) with ESIM-style
adaptive sampling: sub-frames are added by bisection until no tracked point (landmarks,
silhouette, prop outlines) moves more than ``max_px`` between consecutive ones. It returns
the sub-frames' luminance for the event simulator, the exposure-integrated RGB irradiance of
frame ``k`` (exposure window ``[k/fps - e, k/fps]``, stamped at its middle), and ground truth
at the frame stamp and on the 1 ms grid.

Conventions: scene time ``t`` in seconds from 0 (ns integers where exact); images float32
linear intensity *before* the light level (1 = white under normal light); landmarks are the
REP-155 70 points (iBUG 68 + right, left pupil) in pixels with visibility; head pose ``R, t``
maps head-frame points into the camera optical frame (x right, y down, z forward, metres),
head origin :data:`~training.synth.assets.PIVOT_BEHIND_EYES_M` behind the eyes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from training.synth.assets import HEAD_NAMES, load_head
from training.synth.camera import RGBCameraConfig, auto_exposure, rgb_camera, to_gray
from training.synth.esim import piecewise_sample_times
from training.synth.expression import ExpressionRig, ExpressionTrack, landmarks70
from training.synth.motion import HeadTrajectory, MotionConfig
from training.synth.occluders import CameraShake, Glasses, Sprite, flicker
from training.synth.options import LIGHT_LEVELS, MOTIONS, SENSOR_SIZES
from training.synth.render import (
    GLRenderer,
    NumbaRenderer,
    PinholeCamera,
    landmark_visibility,
    make_renderer,
    project_points,
)
from training.synth.variety import random_background, random_identity

_STREAMS = {"identity": 1, "motion": 2, "expression": 3, "props": 4, "background": 5,
            "shake": 6, "head": 7}  # fmt: skip


def stream_rng(seed: int, name: str) -> np.random.Generator:
    """Independent numpy Generator of one named random stream of a scene seed."""
    return np.random.default_rng([int(seed), _STREAMS[name]])


@dataclass(frozen=True)
class SceneConfig:
    """Everything that defines a scene (times in seconds, sizes in px); unknown keys rejected.

    Attributes:
        seed: scene seed (>= 0).
        seconds: duration, seconds (> 0).
        light: light level, one of :data:`~training.synth.camera.LIGHT_LEVELS`.
        motion: ``"slow"`` or ``"fast"`` (:meth:`MotionConfig.preset`).
        width: sensor width, px (:data:`SENSOR_SIZES`).
        height: sensor height, px.
        fps: RGB frame rate, Hz.
        hfov_deg: horizontal field of view, degrees.
        head: base head (``"james"``, ``"template"``, ``"ellipsoid"``) or None for random.
        max_px: adaptive sampling: largest motion between sub-frames, px.
        min_dt_us: adaptive sampling: shortest sub-frame interval, microseconds.
        supersample: renderer sub-pixels per pixel and axis.
        renderer: ``"auto"``, ``"gl"`` or ``"numba"``.
        expression: expression strength in [0, 1].
        glasses_prob: probability of eyewear.
        occluder_prob: probability of a foreground object crossing the view.
        clutter: largest number of moving background objects.
        shake_deg: camera shake amplitude, degrees; None: 0.05 (slow) or 0.2 (fast).
        flicker_hz: light flicker frequency, Hz (100 for 50 Hz mains, 120 for 60 Hz; 0: none).
        flicker_depth: flicker modulation depth in [0, 1).
        face: False renders the scene without its person (background, clutter, occluders and
            camera shake only; no ground truth): an empty seat, for measuring false faces.
    """

    seed: int = 0
    seconds: float = 2.0
    light: str = "normal"
    motion: str = "slow"
    width: int = 346
    height: int = 260
    fps: float = 30.0
    hfov_deg: float = 70.0
    head: str | None = None
    max_px: float = 1.0
    min_dt_us: int = 50
    supersample: int = 1
    renderer: str = "auto"
    expression: float = 1.0
    glasses_prob: float = 0.3
    occluder_prob: float = 0.3
    clutter: int = 3
    shake_deg: float | None = None
    flicker_hz: float = 0.0
    flicker_depth: float = 0.3
    face: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not (self.seconds > 0 and math.isfinite(self.seconds)):
            raise ValueError(f"seconds must be positive and finite, got {self.seconds}")
        if self.light not in LIGHT_LEVELS:
            raise ValueError(f"unknown light level {self.light!r}; choose {list(LIGHT_LEVELS)}")
        if self.motion not in MOTIONS:
            raise ValueError(f"unknown motion {self.motion!r}; choose {list(MOTIONS)}")
        if (self.width, self.height) not in SENSOR_SIZES:
            sizes = ", ".join(f"{w}x{h}" for w, h in SENSOR_SIZES)
            raise ValueError(f"unsupported sensor {self.width}x{self.height}; choose {sizes}")
        if self.head is not None and self.head not in (*HEAD_NAMES, "ellipsoid"):
            raise ValueError(f"unknown head {self.head!r}; choose {[*HEAD_NAMES, 'ellipsoid']}")
        if not (1 <= self.fps <= 1000 and self.max_px > 0 and self.supersample >= 1):
            raise ValueError("fps must be in [1, 1000], max_px > 0 and supersample >= 1")
        if not (0 <= self.flicker_hz < math.inf and 0 <= self.flicker_depth < 1):
            raise ValueError("flicker_hz must be finite and >= 0, flicker_depth in [0, 1)")

    @classmethod
    def from_dict(cls, values: dict) -> SceneConfig:
        """Build from a dict, rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(values) - known):
            raise ValueError(f"unknown scene parameter(s) {unknown}")
        return cls(**values)

    def as_dict(self) -> dict:
        """The parameters as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @property
    def shake_amplitude_deg(self) -> float:
        """Camera shake amplitude, degrees: ``shake_deg``, or the motion preset's default."""
        if self.shake_deg is not None:
            return self.shake_deg
        return 0.05 if self.motion == "slow" else 0.2

    @property
    def n_frames(self) -> int:
        """Number of RGB frames (frame k's exposure ends at k / fps, k = 1..n)."""
        return max(1, int(round(self.seconds * self.fps)))

    @property
    def frame_end_ns(self) -> np.ndarray:
        """(n_frames + 1,) int64 interval boundaries k / fps, ns (k = 0..n)."""
        return np.rint(np.arange(self.n_frames + 1) * 1e9 / self.fps).astype(np.int64)


@dataclass
class Interval:
    """Output of :meth:`Scene.interval` for frame ``k`` (shapes for H x W images, M ms steps).

    Attributes:
        k: frame number (1-based).
        times_ns: (K,) int64 sub-frame times in ``[(k-1)/fps, k/fps]``, ns.
        luminance: (K, H, W) float32 linear luminance of the sub-frames (before light level).
        irradiance: (H, W, 3) float32 exposure-averaged linear RGB (flicker included).
        exposure_s: exposure time, seconds.
        gain: analogue gain.
        stamp_ns: frame stamp (middle of the exposure), ns.
        uv: (70, 2) float64 GT landmark pixels at ``stamp_ns``.
        visible: (70,) bool GT visibility.
        rotation: (3, 3) GT head rotation head -> camera optical frame; None for sources
            without a 3D head pose (photos).
        translation: (3,) GT head origin in the camera optical frame, metres; None likewise.
        hf_times_ns: (M,) int64 1 ms grid times in ``((k-1)/fps, k/fps]``.
        hf_uv: (M, 70, 2) float64 landmark pixels on the grid.
        hf_visible: (M, 70) bool visibility (from the nearest sub-frame).
    """

    k: int
    times_ns: np.ndarray
    luminance: np.ndarray
    irradiance: np.ndarray
    exposure_s: float
    gain: float
    stamp_ns: int
    uv: np.ndarray
    visible: np.ndarray
    rotation: np.ndarray | None
    translation: np.ndarray | None
    hf_times_ns: np.ndarray
    hf_uv: np.ndarray
    hf_visible: np.ndarray
    stats: dict = field(default_factory=dict)


class IntervalScene:
    """What every scene source shares: rendering one RGB frame interval from its sub-frames.

    A subclass sets ``self.config`` (a :class:`SceneConfig`; its light, fps, sampling and
    flicker fields are used here) and implements :meth:`render` (image, landmarks and visibility
    at one time), :meth:`landmarks_px` (landmarks at many times), :meth:`_tracked` (pixel
    positions whose motion bounds the sub-frame spacing) and :meth:`head_pose` (ground-truth
    pose, or None where the source has none).
    """

    config: SceneConfig
    camera: PinholeCamera
    trajectory: HeadTrajectory
    shake: CameraShake
    background: np.ndarray

    def _set_up_motion(self, config: SceneConfig, preset: MotionConfig) -> None:
        """Set the config, camera, trajectory (``preset``), camera shake and background."""
        self.config = cfg = config
        self.camera = PinholeCamera.for_sensor(cfg.width, cfg.height, cfg.hfov_deg)
        self.trajectory = HeadTrajectory(cfg.seconds + 1.0, stream_rng(cfg.seed, "motion"), preset)
        self.shake = CameraShake(cfg.shake_amplitude_deg, stream_rng(cfg.seed, "shake"))
        self.background = random_background(cfg.height, cfg.width,
                                            stream_rng(cfg.seed, "background"))  # fmt: skip

    def pose(self, t: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Trajectory pose in the (shaking) camera optical frame at time(s) ``t``: ``(R, T)``."""
        rot, trans = self.trajectory.pose(t)
        shake = self.shake.rotation(t)
        return shake @ rot, (shake @ trans[..., None])[..., 0]

    def _background(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """``(image, homography)``: the background as the shaking camera sees it at ``t``."""
        cfg = self.config
        hom = self.shake.homography(t, self.camera)
        bg = cv2.warpPerspective(self.background, hom, (cfg.width, cfg.height),
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        return bg, hom

    def render(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render the scene at ``t`` seconds.

        Returns:
            ``(image, uv, visible)``: (H, W, 3) float32 linear image, (70, 2) landmark pixels
            and (70,) bool visibility.
        """
        raise NotImplementedError

    def landmarks_px(self, t: np.ndarray) -> np.ndarray:
        """(N, 70, 2) float64 landmark pixels at times ``t`` (N,), seconds."""
        raise NotImplementedError

    def _tracked(self, t_ns: int) -> np.ndarray:
        """(P, 2) pixel positions whose motion bounds the sub-frame spacing at ``t_ns``."""
        raise NotImplementedError

    def head_pose(self, t: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Ground-truth ``(R, T)`` at ``t`` seconds, or None when the source has no 3D pose."""
        raise NotImplementedError

    def interval(self, k: int, camera: RGBCameraConfig | None = None) -> Interval:
        """Render frame interval ``k`` (1-based); see the module docstring."""
        cfg = self.config
        cam_cfg = camera or rgb_camera("large-pixel", cfg.fps)
        ends = cfg.frame_end_ns
        if not 1 <= k <= cfg.n_frames:
            raise ValueError(f"frame {k} outside 1..{cfg.n_frames}")
        t0, t1 = int(ends[k - 1]), int(ends[k])
        cache: dict[int, tuple] = {t0: self.render(t0 * 1e-9)}
        mean_lum = float(to_gray(cache[t0][0]).mean())
        exposure, gain = auto_exposure(mean_lum, LIGHT_LEVELS[cfg.light], cam_cfg)
        e_ns = int(round(exposure * 1e9))
        stamp = t1 - e_ns // 2
        fixed = {t0, t1, t1 - e_ns, stamp}
        min_dt = cfg.min_dt_us * 1000
        adaptive = piecewise_sample_times(t0, t1, self._tracked, cfg.max_px, 4, min_dt)
        times = np.array(sorted(fixed | {int(x) for x in adaptive}), np.int64)
        for t in times:
            if int(t) not in cache:
                cache[int(t)] = self.render(int(t) * 1e-9)
        images = [cache[int(t)][0] for t in times]
        lum = np.stack([to_gray(im) for im in images]).astype(np.float32)
        irr = self._integrate(times, images, t1 - e_ns, t1)
        hf = np.arange((t0 // 1_000_000 + 1) * 1_000_000, t1 + 1, 1_000_000, dtype=np.int64)
        hf_uv = self.landmarks_px(hf * 1e-9) if hf.size else np.zeros((0, 70, 2))
        nearest = np.abs(hf[:, None] - times[None, :]).argmin(1) if hf.size else []
        hf_vis = np.array([cache[int(times[i])][2] for i in nearest], bool).reshape(-1, 70)
        pose = self.head_pose(stamp * 1e-9)
        rot, trans = pose if pose is not None else (None, None)
        _, uv, vis = cache[stamp]
        return Interval(k, times, lum, irr, exposure, gain, stamp, uv, vis, rot, trans, hf,
                        hf_uv, hf_vis, {"subframes": len(times)})  # fmt: skip

    def _integrate(self, times: np.ndarray, images: list, a_ns: int, b_ns: int) -> np.ndarray:
        """Time average over ``[a, b]`` of the piecewise-linear image sequence x flicker."""
        cfg = self.config
        grid = {int(t) for t in times if a_ns <= t <= b_ns} | {a_ns, b_ns}
        if cfg.flicker_hz > 0 and cfg.flicker_depth > 0:
            step = 1e9 / (16 * cfg.flicker_hz)
            grid |= {int(x) for x in np.arange(a_ns, b_ns, step)}
        ts = np.array(sorted(grid), np.int64)
        j = np.clip(np.searchsorted(times, ts, side="right") - 1, 0, len(times) - 2)
        frac = (ts - times[j]) / np.maximum(times[j + 1] - times[j], 1)
        fl = flicker(ts * 1e-9, cfg.flicker_hz, cfg.flicker_depth)
        wts = np.zeros(len(ts))
        dt = np.diff(ts).astype(np.float64)
        wts[:-1] += 0.5 * dt
        wts[1:] += 0.5 * dt
        wts *= fl / max(dt.sum(), 1.0)
        acc = np.zeros_like(images[0])
        for w, jj, f in zip(wts, j, frac, strict=True):
            acc += np.float32(w * (1 - f)) * images[jj] + np.float32(w * f) * images[jj + 1]
        return acc

    def close(self) -> None:
        """Release what the source holds (nothing by default)."""


class Scene(IntervalScene):
    """A deterministic scene built from a :class:`SceneConfig`; renders lazily per process.

    Args:
        config: the scene parameters.
    """

    def __init__(self, config: SceneConfig) -> None:
        from training.synth.assets import ellipsoid_head

        self._set_up_motion(config, MotionConfig.preset(config.motion))
        cfg = config
        r_head = stream_rng(cfg.seed, "head")
        name = cfg.head or ("james" if r_head.uniform() < 0.7 else "template")
        base = ellipsoid_head() if name == "ellipsoid" else load_head(name)
        self.head_name = name
        self.identity = random_identity(base, stream_rng(cfg.seed, "identity"))
        self.rig = ExpressionRig.build(self.identity.mesh)
        self.expressions = ExpressionTrack(cfg.seconds + 1.0, stream_rng(cfg.seed, "expression"),
                                           amount=cfg.expression)  # fmt: skip
        rp = stream_rng(cfg.seed, "props")
        w, h = cfg.width, cfg.height
        wear = rp.uniform() < cfg.glasses_prob and name != "ellipsoid"
        self.glasses = Glasses.random(self.identity.mesh.landmarks, rp) if wear else None
        n_clutter = int(rp.integers(0, cfg.clutter + 1))
        self.clutter = [Sprite.random(w, h, rp, 1.0, 0.06 * w) for _ in range(n_clutter)]
        self.occluders = []
        if rp.uniform() < cfg.occluder_prob:
            s = Sprite.random(w, h, rp, 1.6, 0.0)
            side = rp.uniform(0, 2 * np.pi)
            start = np.array([w / 2, h / 2]) + 0.7 * max(w, h) * np.array(
                [np.cos(side), np.sin(side)]
            )
            end = np.array([w / 2, h / 2]) + rp.normal(0, 0.15, 2) * [w, h]
            t_cross = rp.uniform(1.0, 3.0)
            self.occluders.append(
                dataclasses.replace(
                    s, start=tuple(start), velocity=tuple((end - start) / t_cross), wobble=(0, 0)
                )
            )
        verts = self.identity.mesh.vertices
        self._track_idx = np.linspace(0, len(verts) - 1, 160).astype(np.int64)
        self._renderer = None

    @property
    def renderer(self) -> GLRenderer | NumbaRenderer:
        """The renderer of this process (created on first use)."""
        if self._renderer is None:
            self._renderer = make_renderer(self.camera, self.config.renderer,
                                           self.config.supersample)  # fmt: skip
        return self._renderer

    def head_pose(self, t: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Ground-truth head pose at ``t`` seconds (see :meth:`pose`); None without a face."""
        return self.pose(t) if self.config.face else None

    def landmarks_px(self, t: np.ndarray) -> np.ndarray:
        """(N, 70, 2) float64 projected REP-155 landmarks at times ``t`` (N,), seconds."""
        t = np.atleast_1d(np.asarray(t, np.float64))
        pts = landmarks70(self.rig, self.expressions.weights(t))
        rot, trans = self.pose(t)
        cam = np.einsum("nij,nkj->nki", rot, pts) + trans[:, None, :]
        c = self.camera
        return np.stack([c.fx * cam[..., 0] / cam[..., 2] + c.cx,
                         c.fy * cam[..., 1] / cam[..., 2] + c.cy], -1)  # fmt: skip

    def _tracked(self, t_ns: int) -> np.ndarray:
        """Pixel positions whose motion bounds the sub-frame spacing at ``t_ns``."""
        t = t_ns * 1e-9
        rot, trans = self.pose(t)
        verts = self.identity.mesh.vertices[self._track_idx]
        uv_v, _ = project_points(verts, rot, trans, self.camera)
        pts = [self.landmarks_px(np.array([t]))[0], uv_v]
        hom = self.shake.homography(t, self.camera)
        corners = np.array([[0, 0, 1], [self.config.width, self.config.height, 1.0]]) @ hom.T
        pts.append(corners[:, :2] / corners[:, 2:])
        pts += [s.polygon(t, hom) for s in self.clutter] + [s.polygon(t) for s in self.occluders]
        return np.concatenate(pts)

    def render(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render the scene at ``t`` seconds.

        Returns:
            ``(image, uv, visible)``: (H, W, 3) float32 linear image, (70, 2) landmark
            pixels and (70,) bool visibility.
        """
        cfg, cam = self.config, self.camera
        weights = self.expressions.weights(t)
        rot, trans = self.pose(t)
        bg, hom = self._background(t)
        for s in self.clutter:
            s.draw(bg, t, homography=hom)
        uv, z = project_points(landmarks70(self.rig, weights), rot, trans, cam)
        if not cfg.face:  # the empty scene: no head, no landmark visible
            image = np.array(bg, np.float32, copy=True)
            for s in self.occluders:
                s.draw(image, t, np.zeros(image.shape[:2], np.float32))
            return image, uv, np.zeros(len(uv), bool)
        ident, mesh = self.identity, self.rig.apply(weights)
        out = self.renderer.render(mesh, rot, trans, ident.lighting, bg, ident.tint)
        image = np.array(out.image, np.float32, copy=True)
        occlusion = np.zeros(out.depth.shape, np.float32)
        if self.glasses is not None:
            self.glasses.draw(image, occlusion, out.depth, rot, trans, cam)
        for s in self.occluders:
            s.draw(image, t, occlusion)
        vis = landmark_visibility(uv, z, out.depth, cam.fx)
        px = np.clip(np.rint(uv).astype(np.int64), 0, [cfg.width - 1, cfg.height - 1])
        vis &= occlusion[px[:, 1], px[:, 0]] < 0.5
        vis[68] &= weights[2] < 0.5  # a closed eye hides its pupil
        vis[69] &= weights[3] < 0.5
        return image, uv, vis

    def close(self) -> None:
        """Release the renderer."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
