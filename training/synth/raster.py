"""Software rasteriser (numba): z-buffered triangles with perspective-correct barycentrics.

The fallback backend of :mod:`training.synth.render` when no OpenGL context can be made. It
rasterises into a triangle-id / barycentric / depth G-buffer and shades it with the same
formula as the GLSL shader (:func:`shade`), so both backends give the same picture up to
filtering details. Pixel centres are at integer coordinates (OpenCV convention).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def rasterize(
    uvz: np.ndarray, faces: np.ndarray, width: int, height: int, near: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise triangles with a z-buffer.

    Args:
        uvz: (V, 3) float64 pixel column, pixel row and camera depth z (metres) per vertex.
        faces: (F, 3) int32 vertex indices.
        width: image width, px.
        height: image height, px.
        near: triangles with a vertex nearer than this (metres) are skipped.

    Returns:
        ``(depth, tri, bary)``: (H, W) float32 depth (inf where empty), (H, W) int32 triangle
        index (-1 where empty), (H, W, 3) float32 perspective-correct barycentrics.
    """
    depth = np.full((height, width), np.inf, dtype=np.float32)
    tri = np.full((height, width), -1, dtype=np.int32)
    bary = np.zeros((height, width, 3), dtype=np.float32)
    for f in range(faces.shape[0]):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        z0, z1, z2 = uvz[i0, 2], uvz[i1, 2], uvz[i2, 2]
        if z0 < near or z1 < near or z2 < near:
            continue
        x0, y0 = uvz[i0, 0], uvz[i0, 1]
        x1, y1 = uvz[i1, 0], uvz[i1, 1]
        x2, y2 = uvz[i2, 0], uvz[i2, 1]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) < 1e-12:
            continue
        xmin = max(int(np.ceil(min(x0, x1, x2))), 0)
        xmax = min(int(np.floor(max(x0, x1, x2))), width - 1)
        ymin = max(int(np.ceil(min(y0, y1, y2))), 0)
        ymax = min(int(np.floor(max(y0, y1, y2))), height - 1)
        if xmin > xmax or ymin > ymax:
            continue
        inv_area = 1.0 / area
        iz0, iz1, iz2 = 1.0 / z0, 1.0 / z1, 1.0 / z2
        for py in range(ymin, ymax + 1):
            for px in range(xmin, xmax + 1):
                w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) * inv_area
                w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) * inv_area
                w2 = 1.0 - w0 - w1
                if w0 < 0.0 or w1 < 0.0 or w2 < 0.0:
                    continue
                s = w0 * iz0 + w1 * iz1 + w2 * iz2
                z = 1.0 / s
                if z < depth[py, px]:
                    depth[py, px] = z
                    tri[py, px] = f
                    bary[py, px, 0] = w0 * iz0 * z
                    bary[py, px, 1] = w1 * iz1 * z
                    bary[py, px, 2] = w2 * iz2 * z
    return depth, tri, bary


def sample_bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinearly sample a texture with OpenGL-style coordinates (v up, repeat-free clamp).

    Args:
        texture: (Ht, Wt, C) float32, row 0 at the top of the image (v = 1).
        uv: (N, 2) texture coordinates in [0, 1].

    Returns:
        (N, C) float32 samples.
    """
    ht, wt = texture.shape[:2]
    x = np.clip(uv[:, 0] * wt - 0.5, 0, wt - 1)
    y = np.clip((1.0 - uv[:, 1]) * ht - 0.5, 0, ht - 1)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, wt - 1), np.minimum(y0 + 1, ht - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bot = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def shade(
    albedo: np.ndarray,
    normal: np.ndarray,
    position: np.ndarray,
    light_dir: np.ndarray,
    ambient: float,
    diffuse: float,
    specular: float,
    shininess: float,
) -> np.ndarray:
    """Two-sided Lambert + Blinn-Phong shading in the camera frame (same as the GLSL shader).

    Args:
        albedo: (N, 3) linear albedo.
        normal: (N, 3) normals in the camera frame (need not be unit).
        position: (N, 3) surface points in the camera frame, metres.
        light_dir: (3,) unit vector towards the light, camera frame.
        ambient: ambient intensity.
        diffuse: directional light intensity.
        specular: specular intensity.
        shininess: Blinn-Phong exponent.

    Returns:
        (N, 3) float32 linear radiance.
    """
    n = normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    v = -position / np.maximum(np.linalg.norm(position, axis=1, keepdims=True), 1e-12)
    n = np.where(np.sum(n * v, axis=1, keepdims=True) < 0, -n, n)
    ndl = np.maximum(n @ light_dir, 0.0)[:, None]
    h = light_dir[None, :] + v
    h /= np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
    spec = specular * np.maximum(np.sum(n * h, axis=1), 0.0)[:, None] ** shininess
    return (albedo * (ambient + diffuse * ndl) + spec * (ndl > 0)).astype(np.float32)
