"""Eyewear, moving 2D objects (background clutter, foreground occluders), camera shake, flicker.

* :class:`Glasses`: a spectacle frame in the head frame (two lens rims, bridge, temples) built
  from the eye landmarks, projected and drawn with anti-aliased lines; each segment is depth
  tested against the head's z-buffer so temples behind the head disappear. Lenses are clear,
  tinted or dark (sunglasses); frame and lens coverage go into an occlusion map, so landmarks
  behind an opaque rim or a dark lens are flagged not visible.
* :class:`Sprite`: a textured polygon moving smoothly over the image (behind the head as
  clutter, or in front of it as an occluder such as a hand or a cup).
* :class:`CameraShake`: small camera rotations (hand-held jitter); the background, which is
  far away, moves by the homography ``K R K^-1``.
* :func:`flicker`: mains-driven light modulation; :func:`bandwidth_limit`: an event-rate cap.

All images are float32 linear intensity, (H, W, 3); occlusion maps are (H, W) float32 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facealign_ros.face.pose import euler_to_matrix
from training.synth.render import PinholeCamera, project_points

_SHIFT = 4  # cv2 sub-pixel bits
_SCALE = float(1 << _SHIFT)


def _ellipse_points(n: int) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    # a slightly squared-off lens outline
    return np.stack([np.sign(np.cos(a)) * np.abs(np.cos(a)) ** 0.7,
                     np.sign(np.sin(a)) * np.abs(np.sin(a)) ** 0.8], 1)  # fmt: skip


@dataclass(frozen=True)
class Glasses:
    """A spectacle frame attached to the head.

    Attributes:
        rims: (2, R, 3) head-frame rim polylines (closed), metres: subject's right, left.
        bridge: (B, 3) polyline joining the rims over the nose.
        temples: (2, 2, 3) temple segments from the rims' outer edges towards the ears.
        color: (3,) linear RGB of the frame.
        thickness_m: frame thickness, metres.
        lens_alpha: lens opacity (0 clear ... 0.9 sunglasses).
        lens_color: (3,) linear RGB of the lens tint.
    """

    rims: np.ndarray
    bridge: np.ndarray
    temples: np.ndarray
    color: tuple[float, float, float]
    thickness_m: float
    lens_alpha: float
    lens_color: tuple[float, float, float]

    @classmethod
    def random(cls, landmarks: np.ndarray, rng: np.random.Generator) -> Glasses:
        """Random frame fitted to (68, 3) head-frame landmarks (metres)."""
        lm = np.asarray(landmarks, np.float64)
        rims = []
        width = rng.uniform(1.45, 1.75)
        height = rng.uniform(0.65, 0.95)
        stand_off = rng.uniform(0.010, 0.016)
        outline = _ellipse_points(32)
        for eye in (np.arange(36, 42), np.arange(42, 48)):
            c = lm[eye].mean(0)
            half_w = 0.5 * width * np.linalg.norm(lm[eye[3]] - lm[eye[0]])
            half_h = height * half_w
            pts = np.zeros((32, 3))
            pts[:, 0] = c[0] + half_w * outline[:, 0]
            pts[:, 1] = c[1] + 0.1 * half_h + half_h * outline[:, 1]
            pts[:, 2] = lm[eye, 2].min() - stand_off + 0.15 * half_w * (outline[:, 0] ** 2)
            rims.append(pts)
        rims_arr = np.stack(rims)
        inner_r = rims_arr[0][np.argmax(rims_arr[0][:, 0])]
        inner_l = rims_arr[1][np.argmin(rims_arr[1][:, 0])]
        mid = 0.5 * (inner_r + inner_l)
        mid[1] -= 0.003
        mid[2] = min(mid[2], lm[27, 2] - 0.004)
        bridge = np.stack([inner_r, mid, inner_l])
        temples = []
        for rim, ear in ((rims_arr[0], lm[0]), (rims_arr[1], lm[16])):
            outer = rim[np.argmax(np.abs(rim[:, 0] - mid[0]))]
            end = np.array([ear[0] * 1.05, outer[1] + 0.005, ear[2] + 0.06])
            temples.append(np.stack([outer, end]))
        dark = rng.uniform() < 0.2
        frame_col = rng.choice([0.02, 0.05, 0.3, 0.6]) * rng.uniform(0.7, 1.3, 3)
        lens_col = rng.uniform(0.02, 0.15, 3) if dark else np.array([0.6, 0.65, 0.7])
        return cls(
            rims=rims_arr,
            bridge=bridge,
            temples=np.stack(temples),
            color=tuple(float(c) for c in np.clip(frame_col, 0, 1)),
            thickness_m=float(rng.uniform(0.0015, 0.004)),
            lens_alpha=float(rng.uniform(0.75, 0.9) if dark else rng.uniform(0.03, 0.15)),
            lens_color=tuple(float(c) for c in lens_col),
        )

    def draw(
        self,
        image: np.ndarray,
        occlusion: np.ndarray,
        depth: np.ndarray,
        rotation: np.ndarray,
        translation: np.ndarray,
        camera: PinholeCamera,
    ) -> None:
        """Draw the glasses in place over ``image`` and add their coverage to ``occlusion``.

        Args:
            image: (H, W, 3) float32 linear image with the head rendered in it.
            occlusion: (H, W) float32 occlusion map, updated in place (max).
            depth: (H, W) head z-buffer, metres (inf where empty).
            rotation: (3, 3) head -> camera.
            translation: (3,) metres.
            camera: intrinsics.
        """
        h, w = depth.shape
        starts, ends = [], []
        for poly, closed in ((self.rims[0], True), (self.rims[1], True), (self.bridge, False),
                             (self.temples[0], False), (self.temples[1], False)):  # fmt: skip
            nxt = np.roll(poly, -1, axis=0) if closed else poly[1:]
            starts.append(poly[: len(nxt)])
            ends.append(nxt)
        a, b = np.concatenate(starts), np.concatenate(ends)
        uv, z = project_points(np.concatenate([a, b]), rotation, translation, camera)
        n = len(a)
        uv_a, uv_b, zm = uv[:n], uv[n:], 0.5 * (z[:n] + z[n:])
        mid = np.rint(0.5 * (uv_a + uv_b)).astype(np.int64)
        ok = (z[:n] > 0.02) & (z[n:] > 0.02)
        inside = (mid[:, 0] >= 0) & (mid[:, 0] < w) & (mid[:, 1] >= 0) & (mid[:, 1] < h)
        behind = np.zeros(n, bool)
        behind[inside] = zm[inside] > depth[mid[inside, 1], mid[inside, 0]] + 0.004
        ok &= ~behind
        if not ok.any():
            return
        pts = np.concatenate([uv_a[ok], uv_b[ok]])
        x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int) - 4, 0)
        x1, y1 = np.minimum(np.ceil(pts.max(0)).astype(int) + 5, [w, h])
        if x0 >= x1 or y0 >= y1:
            return
        px = max(1, int(round(self.thickness_m * camera.fx / float(np.median(zm[ok])))))
        lines = np.rint((np.stack([uv_a[ok], uv_b[ok]], 1) - [x0, y0]) * _SCALE).astype(np.int32)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.polylines(mask, list(lines), False, 255, px, cv2.LINE_AA, _SHIFT)
        lens = np.zeros_like(mask)
        for rim in self.rims:
            r_uv, r_z = project_points(rim, rotation, translation, camera)
            c = np.rint(r_uv.mean(0)).astype(int)
            inside = 0 <= c[0] < w and 0 <= c[1] < h
            if np.any(r_z <= 0.02) or (inside and r_z.mean() > depth[c[1], c[0]] + 0.004):
                continue
            poly = np.rint((r_uv - [x0, y0]) * _SCALE).astype(np.int32)
            cv2.fillPoly(lens, [poly], 255, cv2.LINE_AA, _SHIFT)
        a_lens = lens.astype(np.float32) * np.float32(self.lens_alpha / 255.0)
        a_frame = mask.astype(np.float32) * np.float32(1.0 / 255.0)
        roi = image[y0:y1, x0:x1]
        roi *= 1.0 - a_lens[..., None]
        roi += a_lens[..., None] * np.asarray(self.lens_color, np.float32)
        roi *= 1.0 - a_frame[..., None]
        roi += a_frame[..., None] * np.asarray(self.color, np.float32)
        occ = occlusion[y0:y1, x0:x1]
        np.maximum(occ, np.maximum(a_lens, a_frame), out=occ)


_SHAPES = ("ellipse", "rect", "blob", "bar")


@dataclass(frozen=True)
class Sprite:
    """A flat textured shape moving in the image plane.

    Attributes:
        outline: (P, 2) polygon in sprite units (about [-1, 1]).
        size_px: (2,) half-extent along the sprite's x and y, px.
        color: (3,) linear RGB.
        stripes: (2,) spatial frequency of a sinusoidal texture, cycles per half-extent.
        contrast: texture contrast in [0, 1).
        start: (2,) centre at t = 0, px.
        velocity: (2,) px/s.
        wobble: (2,) amplitude of a sinusoidal path component, px.
        wobble_hz: frequency of the sinusoid, Hz.
        spin_dps: rotation speed, degrees per second.
        phase: sinusoid phase, radians.
    """

    outline: np.ndarray
    size_px: tuple[float, float]
    color: tuple[float, float, float]
    stripes: tuple[float, float]
    contrast: float
    start: tuple[float, float]
    velocity: tuple[float, float]
    wobble: tuple[float, float]
    wobble_hz: float
    spin_dps: float
    phase: float

    @classmethod
    def random(
        cls, width: int, height: int, rng: np.random.Generator, scale: float = 1.0,
        speed_px_s: float = 40.0,
    ) -> Sprite:  # fmt: skip
        """A random sprite somewhere in a ``width`` x ``height`` image.

        Args:
            width: image width, px.
            height: image height, px.
            rng: numpy Generator.
            scale: size relative to the image (1: up to ~1/4 of its height).
            speed_px_s: typical speed, px/s.
        """
        kind = _SHAPES[rng.integers(len(_SHAPES))]
        a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        if kind == "ellipse":
            out = np.stack([np.cos(a), np.sin(a)], 1)
        elif kind == "blob":
            r = 1 + 0.25 * np.sin(3 * a + rng.uniform(0, 6)) + 0.15 * np.sin(5 * a)
            out = np.stack([r * np.cos(a), r * np.sin(a)], 1) / 1.3
        elif kind == "bar":
            out = np.array([[-1, -0.25], [1, -0.25], [1, 0.25], [-1, 0.25]], float)
        else:
            out = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
        s = scale * height * rng.uniform(0.06, 0.22)
        return cls(
            outline=out,
            size_px=(float(s * rng.uniform(0.7, 1.4)), float(s * rng.uniform(0.7, 1.4))),
            color=tuple(float(c) for c in rng.uniform(0.03, 0.8, 3)),
            stripes=(float(rng.uniform(0, 3)), float(rng.uniform(0, 3))),
            contrast=float(rng.uniform(0.0, 0.6)),
            start=(float(rng.uniform(0, width)), float(rng.uniform(0, height))),
            velocity=tuple(float(v) for v in rng.normal(0, speed_px_s, 2)),
            wobble=tuple(float(v) for v in rng.uniform(0, 0.05 * height, 2)),
            wobble_hz=float(rng.uniform(0.1, 0.5)),
            spin_dps=float(rng.normal(0, 8)),
            phase=float(rng.uniform(0, 2 * np.pi)),
        )

    def placement(self, t: float) -> tuple[np.ndarray, float]:
        """Centre (2,) px and rotation (radians) at time ``t`` seconds."""
        w = np.asarray(self.wobble) * np.sin(2 * np.pi * self.wobble_hz * t + self.phase)
        return np.asarray(self.start) + np.asarray(self.velocity) * t + w, np.radians(
            self.spin_dps * t
        )

    def polygon(self, t: float, homography: np.ndarray | None = None) -> np.ndarray:
        """(P, 2) image polygon at time ``t``, optionally moved by a 3x3 homography."""
        c, ang = self.placement(t)
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        pts = (self.outline * np.asarray(self.size_px)) @ rot.T + c
        if homography is not None:
            ph = np.c_[pts, np.ones(len(pts))] @ homography.T
            pts = ph[:, :2] / ph[:, 2:]
        return pts

    def draw(
        self,
        image: np.ndarray,
        t: float,
        occlusion: np.ndarray | None = None,
        homography: np.ndarray | None = None,
    ) -> None:
        """Composite the sprite at time ``t`` into ``image`` (and ``occlusion``) in place."""
        h, w = image.shape[:2]
        poly = self.polygon(t, homography)
        x0, y0 = np.floor(poly.min(0)).astype(int) - 1
        x1, y1 = np.ceil(poly.max(0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x0 >= x1 or y0 >= y1:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        pts = np.rint((poly - [x0, y0]) * _SCALE).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, _SHIFT)
        alpha = mask.astype(np.float32) * np.float32(1 / 255)
        c, ang = self.placement(t)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        u = ((xx - c[0]) * np.cos(ang) + (yy - c[1]) * np.sin(ang)) / self.size_px[0]
        v = (-(xx - c[0]) * np.sin(ang) + (yy - c[1]) * np.cos(ang)) / self.size_px[1]
        tex = 1 + self.contrast * np.sin(np.pi * (self.stripes[0] * u + self.stripes[1] * v))
        col = np.asarray(self.color, np.float32) * tex[..., None].astype(np.float32)
        roi = image[y0:y1, x0:x1]
        roi *= 1 - alpha[..., None]
        roi += alpha[..., None] * col
        if occlusion is not None:
            np.maximum(occlusion[y0:y1, x0:x1], alpha, out=occlusion[y0:y1, x0:x1])


class CameraShake:
    """Small smooth camera rotations (sum of sinusoids, 1-12 Hz).

    Args:
        amplitude_deg: typical rotation per axis, degrees (0 disables the shake).
        seed: numpy Generator or seed.
    """

    def __init__(self, amplitude_deg: float, seed: int | np.random.Generator = 0) -> None:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.amplitude_deg = float(amplitude_deg)
        self._f = rng.uniform(1.0, 12.0, size=(3, 4))
        self._ph = rng.uniform(0, 2 * np.pi, size=(3, 4))
        self._a = np.radians(amplitude_deg) * rng.uniform(0.2, 1.0, size=(3, 4)) / 2.0

    def rotation(self, t: float | np.ndarray) -> np.ndarray:
        """(3, 3) or (N, 3, 3) rotation applied to the world by the shaking camera."""
        ts = np.atleast_1d(np.asarray(t, np.float64))
        ang = np.sum(self._a * np.sin(2 * np.pi * self._f * ts[:, None, None] + self._ph), -1)
        rot = euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2])
        return rot[0] if np.ndim(t) == 0 else rot

    def homography(self, t: float, camera: PinholeCamera) -> np.ndarray:
        """(3, 3) image motion of a distant background, ``K R K^-1``, at time ``t``."""
        k = camera.K
        return k @ self.rotation(float(t)) @ np.linalg.inv(k)


def flicker(t: float | np.ndarray, hz: float, depth: float) -> np.ndarray:
    """Relative illumination of a mains-driven lamp: ``1 + depth * cos(2 pi hz t)``.

    Args:
        t: seconds, scalar or (N,).
        hz: flicker frequency (twice the mains frequency: 100 for 50 Hz mains); 0 = steady.
        depth: modulation depth in [0, 1).

    Returns:
        float64 factor(s) with mean 1.
    """
    t = np.asarray(t, np.float64)
    if hz <= 0 or depth <= 0:
        return np.ones_like(t)
    return 1.0 + depth * np.cos(2 * np.pi * hz * t)


def bandwidth_limit(
    events: np.ndarray,
    max_rate_hz: float,
    rng: np.random.Generator,
    span_ns: tuple[int, int] | None = None,
    bin_ns: int = 1_000_000,
) -> tuple[np.ndarray, int]:
    """Drop events uniformly at random where the rate exceeds ``max_rate_hz``.

    The rate is measured in bins of the absolute ``bin_ns`` grid; a bin cut by the ends of
    ``span_ns`` (the interval these events come from) gets a proportionally smaller quota, so
    that consecutive calls never let more than the rate through in any bin.

    Args:
        events: sorted :data:`~facealign_ros.events.EVENT_DTYPE` array.
        max_rate_hz: largest event rate, events per second (<= 0: no limit).
        rng: numpy Generator choosing the dropped events.
        span_ns: ``(start, end]`` of the interval the events come from, ns; None: the
            events' own range, whole bins.
        bin_ns: bin length, ns.

    Returns:
        ``(kept, dropped)``: kept events in their original order and the number dropped.
    """
    if max_rate_hz <= 0 or events.size == 0:
        return events, 0
    t = events["t"]
    bins = (t - 1) // bin_ns  # bin b holds (b * bin, (b + 1) * bin]
    uniq, starts, counts = np.unique(bins, return_index=True, return_counts=True)
    lo = uniq * bin_ns
    hi = lo + bin_ns
    if span_ns is not None:
        lo, hi = np.maximum(lo, span_ns[0]), np.minimum(hi, span_ns[1])
    caps = np.maximum(np.floor(max_rate_hz * (hi - lo) * 1e-9), 0).astype(np.int64)
    keep = np.ones(events.size, bool)
    for s, c, cap in zip(starts, counts, caps, strict=True):
        if c > cap:
            keep[s + rng.choice(c, size=c - cap, replace=False)] = False
    return events[keep], int(events.size - keep.sum())
