"""Appearance variety: identity shape (landmark-anchored RBF warps), skin tone, light, background.

Identity shape: random, left-right symmetric changes of facial proportions (face width, chin
length, nose length and protrusion, eye spacing, mouth width, brow height) plus small
independent jitter are set as displacements of the 68 landmarks and spread smoothly over the
mesh with a Gaussian radial basis function interpolant; far from the landmarks (back of the
head) the displacement fades to zero. A global anisotropic scale varies head size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from training.synth.assets import HeadMesh, srgb_to_linear, vertex_normals
from training.synth.raster import sample_bilinear
from training.synth.render import Lighting

SKIN_TONES_SRGB = np.array(
    [[255, 224, 196], [241, 194, 167], [224, 172, 140], [198, 134, 103], [161, 102, 74],
     [120, 75, 52], [87, 54, 38]], np.float32,
)  # fmt: skip
"""A light-to-dark palette of skin colours (sRGB, 0-255)."""


def rbf_deform(
    mesh: HeadMesh, displacement: np.ndarray, sigma_m: float = 0.03, reg: float = 0.05
) -> HeadMesh:
    """Warp a mesh so that its landmarks move by about ``displacement`` (Gaussian RBF).

    The regularised (smoothing) RBF fit keeps the warp smooth where landmarks nearly coincide
    (closed lips); the landmarks are moved by the same field as the vertices, so they stay
    consistent with the surface.

    Args:
        mesh: the head.
        displacement: (68, 3) landmark displacements, metres.
        sigma_m: RBF width, metres.
        reg: Tikhonov regularisation of the RBF system (kernel diagonal is 1).

    Returns:
        A new :class:`HeadMesh`.
    """
    lm = mesh.landmarks.astype(np.float64)

    def kern(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * sigma_m**2))

    weights = np.linalg.solve(kern(lm, lm) + reg * np.eye(len(lm)), displacement)
    v = mesh.vertices.astype(np.float64)
    dv = np.concatenate([kern(v[i : i + 8192], lm) @ weights for i in range(0, len(v), 8192)])
    v = v + dv
    new_lm = lm + kern(lm, lm) @ weights
    return replace(
        mesh,
        vertices=v.astype(np.float32),
        normals=vertex_normals(v, mesh.faces),
        landmarks=new_lm.astype(np.float32),
    )


def scale_mesh(mesh: HeadMesh, scale: np.ndarray) -> HeadMesh:
    """Scale a mesh about the head origin by (3,) per-axis factors (normals re-derived)."""
    s = np.asarray(scale, np.float64)
    v = mesh.vertices * s
    return replace(
        mesh,
        vertices=v.astype(np.float32),
        normals=vertex_normals(v, mesh.faces),
        landmarks=(mesh.landmarks * s).astype(np.float32),
    )


def random_shape_displacement(
    mesh: HeadMesh, rng: np.random.Generator, strength: float = 1.0
) -> np.ndarray:
    """Random symmetric changes of facial proportions as (68, 3) landmark displacements (m).

    Args:
        mesh: the head (its landmarks set the reference positions).
        rng: numpy Generator.
        strength: multiplies all amplitudes (0 = no change).

    Returns:
        (68, 3) float64 displacements, metres.
    """
    lm = mesh.landmarks.astype(np.float64)
    cx = 0.5 * (lm[36, 0] + lm[45, 0])
    side = np.sign(lm[:, 0] - cx)
    d = np.zeros((68, 3))
    g = lambda std: strength * rng.normal(0.0, std)  # noqa: E731
    d[0:17, 0] += side[0:17] * g(0.005)  # face width
    d[5:12, 1] += g(0.006)  # chin length
    d[27:36, 2] -= g(0.004) * np.linspace(0.3, 1.0, 9)  # nose protrusion
    d[30:36, 1] += g(0.003)  # nose length
    d[31:36, 0] += (lm[31:36, 0] - lm[33, 0]) * g(0.15)  # nose width
    d[36:48, 0] += side[36:48] * g(0.003)  # eye spacing
    d[48:68, 0] += (lm[48:68, 0] - lm[48:68, 0].mean()) * g(0.12)  # mouth width
    d[48:68, 1] += g(0.003)  # mouth height
    d[17:27, 1] += g(0.003)  # brow height
    return d + strength * rng.normal(0.0, 0.0008, size=(68, 3))


def base_skin_tone(mesh: HeadMesh) -> np.ndarray:
    """Mean linear albedo at the cheek/nose landmarks' vertices, (3,) float32."""
    idx = mesh.landmark_vertex[[2, 3, 13, 14, 29, 30]]
    col = mesh.colors[idx]
    if mesh.texture is not None:
        col = col * sample_bilinear(mesh.texture, mesh.uv[idx])
    return col.mean(axis=0)


@dataclass(frozen=True)
class Identity:
    """One synthetic person: warped mesh, skin tint and light.

    Attributes:
        mesh: the warped, scaled head.
        tint: (3,) RGB albedo multiplier giving the sampled skin tone.
        lighting: the light.
    """

    mesh: HeadMesh
    tint: tuple[float, float, float]
    lighting: Lighting


def random_lighting(rng: np.random.Generator) -> Lighting:
    """A random directional + ambient light from the camera's side (camera frame)."""
    az, el = np.radians(rng.uniform(-70, 70)), np.radians(rng.uniform(-20, 60))
    direction = (np.sin(az) * np.cos(el), -np.sin(el), -np.cos(az) * np.cos(el))
    return Lighting(
        direction=tuple(float(c) for c in direction),
        ambient=float(rng.uniform(0.15, 0.5)),
        diffuse=float(rng.uniform(0.4, 1.0)),
        specular=float(rng.uniform(0.0, 0.12)),
        shininess=float(rng.uniform(8, 40)),
    )


def random_identity(
    mesh: HeadMesh, rng: np.random.Generator, shape_strength: float = 1.0
) -> Identity:
    """Sample an identity: proportions, head size, skin tone and light.

    Args:
        mesh: base head from :func:`training.synth.assets.load_head`.
        rng: numpy Generator.
        shape_strength: amplitude of the proportion changes (0 keeps the base shape).

    Returns:
        The :class:`Identity`.
    """
    warped = rbf_deform(mesh, random_shape_displacement(mesh, rng, shape_strength))
    warped = scale_mesh(warped, rng.normal(1.0, 0.05 * shape_strength) * rng.normal(1, 0.02, 3))
    pick = rng.uniform(0, len(SKIN_TONES_SRGB) - 1)
    i = int(pick)
    srgb = (1 - (pick - i)) * SKIN_TONES_SRGB[i] + (pick - i) * SKIN_TONES_SRGB[i + 1]
    target = srgb_to_linear(srgb / 255.0) * 0.8  # albedo, not display white
    tint = target / np.maximum(base_skin_tone(mesh), 1e-3)
    tint = tint / max(1.0, float(tint.max()) / 2.0)  # keep hair/eyes plausible
    return Identity(warped, tuple(float(c) for c in tint), random_lighting(rng))


def random_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A cluttered random background: smooth multi-scale noise, a gradient and rectangles.

    Args:
        height: px.
        width: px.
        rng: numpy Generator.

    Returns:
        (H, W, 3) float32 linear intensity in [0, 1].
    """
    img = np.zeros((height, width, 3), np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for cells in (3, 9, 27):
        grid = rng.uniform(0, 1, size=(cells + 1, cells + 1, 3)).astype(np.float32)
        gy, gx = yy / height * cells, xx / width * cells
        y0, x0 = np.minimum(gy.astype(int), cells - 1), np.minimum(gx.astype(int), cells - 1)
        fy, fx = (gy - y0)[..., None], (gx - x0)[..., None]
        val = (grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx) * (1 - fy) + (
            grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
        ) * fy
        img += val * np.float32(0.5 ** np.log(cells) / 1.5)
    for _ in range(rng.integers(2, 8)):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(width // 20, width // 3), rng.integers(height // 20, height // 2)
        img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 1, 3)
    img *= np.float32(rng.uniform(0.15, 0.6)) / max(float(img.mean()), 1e-3)
    return np.clip(img, 0.0, 1.0)
