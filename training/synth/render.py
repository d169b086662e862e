"""Headless z-buffered rendering of textured, lit heads with a pinhole camera.

Two backends draw the same picture: :class:`GLRenderer` (moderngl on a standalone EGL context,
Mesa's llvmpipe on a CPU-only machine) and :class:`NumbaRenderer` (the software rasteriser of
:mod:`training.synth.raster`). :func:`make_renderer` takes GL when it can and falls back.

Conventions: camera optical frame (x right, y down, z forward), metres; a head point ``X``
(head frame, see :mod:`training.synth.assets`) maps to ``R @ X + t``; pixel centres sit at
integer coordinates (OpenCV). Images are float32 *linear* intensity (not gamma encoded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.synth.assets import HeadMesh
from training.synth.raster import rasterize, sample_bilinear, shade


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole intrinsics (no distortion).

    Attributes:
        fx: focal length along x, px.
        fy: focal length along y, px.
        cx: principal point column, px (pixel centres at integers).
        cy: principal point row, px.
        width: image width, px.
        height: image height, px.
    """

    fx: float = 250.0
    fy: float = 250.0
    cx: float = 172.5
    cy: float = 129.5
    width: int = 346
    height: int = 260

    @classmethod
    def for_sensor(cls, width: int, height: int, hfov_deg: float = 70.0) -> PinholeCamera:
        """A centred camera of the given size and horizontal field of view (degrees)."""
        f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
        return cls(f, f, (width - 1) / 2, (height - 1) / 2, width, height)

    def scaled(self, s: int) -> PinholeCamera:
        """The same camera with ``s`` x ``s`` sub-pixels per pixel (for supersampling)."""
        return PinholeCamera(
            self.fx * s, self.fy * s, (self.cx + 0.5) * s - 0.5, (self.cy + 0.5) * s - 0.5,
            self.width * s, self.height * s,
        )  # fmt: skip

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the usual name of the intrinsic matrix
        """(3, 3) float64 intrinsic matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])


@dataclass(frozen=True)
class Lighting:
    """One directional light plus ambient light, in the camera frame.

    Attributes:
        direction: (3,) unit vector from the surface towards the light (camera frame).
        ambient: ambient intensity (multiplies albedo).
        diffuse: directional intensity (Lambert).
        specular: specular intensity (Blinn-Phong, white).
        shininess: Blinn-Phong exponent.
    """

    direction: tuple[float, float, float] = (0.3, -0.4, -0.866)
    ambient: float = 0.35
    diffuse: float = 0.75
    specular: float = 0.05
    shininess: float = 20.0

    def unit_direction(self) -> np.ndarray:
        """(3,) float64 normalised :attr:`direction`."""
        d = np.asarray(self.direction, np.float64)
        return d / np.linalg.norm(d)


@dataclass(frozen=True)
class RenderOutput:
    """One rendered frame.

    Attributes:
        image: (H, W, 3) float32 linear intensity, face composited over the background.
        depth: (H, W) float32 camera z of the nearest surface, metres; inf on background.
        alpha: (H, W) float32 face coverage in [0, 1] (fractional on anti-aliased edges).
    """

    image: np.ndarray
    depth: np.ndarray
    alpha: np.ndarray = field(repr=False)


def project_points(
    points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, camera: PinholeCamera
) -> tuple[np.ndarray, np.ndarray]:
    """Project head-frame points into the image.

    Args:
        points: (N, 3) head-frame points, metres.
        rotation: (3, 3) rotation head -> camera.
        translation: (3,) head origin in the camera frame, metres.
        camera: intrinsics.

    Returns:
        ``(uv, z)``: (N, 2) float64 pixel coordinates (column, row) and (N,) camera depth, m.
    """
    p = np.asarray(points, np.float64) @ np.asarray(rotation, np.float64).T + translation
    z = p[:, 2]
    uv = np.stack([camera.fx * p[:, 0] / z + camera.cx, camera.fy * p[:, 1] / z + camera.cy], 1)
    return uv, z


def landmark_visibility(
    uv: np.ndarray,
    z: np.ndarray,
    depth: np.ndarray,
    focal_px: float,
    tolerance_m: float = 0.012,
    radius_m: float = 0.005,
) -> np.ndarray:
    """Flag landmarks that are inside the image and not hidden behind other surfaces.

    A landmark is visible when its depth is within ``tolerance_m`` of the farthest z-buffer
    value in a square window of half-size ``radius_m`` (projected at the landmark's depth)
    around it. The window makes the test tolerant to landmarks that sit a few millimetres off
    or behind the surface at grazing silhouettes (e.g. jaw points seen from the front), while
    points behind the nose or the far cheek stay hidden.

    Args:
        uv: (N, 2) pixel coordinates.
        z: (N,) landmark camera depth, metres.
        depth: (H, W) z-buffer from :class:`RenderOutput`.
        focal_px: focal length, px (to turn ``radius_m`` into pixels).
        tolerance_m: allowed depth excess, metres.
        radius_m: window half-size on the surface, metres.

    Returns:
        (N,) bool visibility.
    """
    h, w = depth.shape
    col, row = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h) & (z > 0)
    vis = np.zeros(z.shape, bool)
    for i in np.flatnonzero(inside):
        r = max(1, int(np.ceil(focal_px * radius_m / z[i])))
        win = depth[max(row[i] - r, 0) : row[i] + r + 1, max(col[i] - r, 0) : col[i] + r + 1]
        vis[i] = z[i] <= win.max() + tolerance_m
    return vis


def _block_reduce(a: np.ndarray, s: int, op: np.ufunc) -> np.ndarray:
    """Reduce ``s`` x ``s`` pixel blocks with the ufunc ``op`` (add, minimum, ...) in place."""
    if s == 1:
        return a
    out = a[0::s, 0::s].copy()
    for dy in range(s):
        for dx in range(s):
            if dy or dx:
                op(out, a[dy::s, dx::s], out=out)
    return out


def _composite(rgba: np.ndarray, background: np.ndarray | None, s: int) -> tuple:
    """Box-downsample premultiplied RGBA by ``s`` and composite over the background."""
    small = _block_reduce(rgba, s, np.add)
    if s > 1:
        small *= np.float32(1.0 / (s * s))
    alpha = np.ascontiguousarray(small[..., 3])
    img = small[..., :3]
    if background is not None:
        bg = np.asarray(background, np.float32)
        bg = bg[..., None] if bg.ndim == 2 else bg
        img = img + (1.0 - alpha)[..., None] * bg
    return np.ascontiguousarray(img, dtype=np.float32), alpha


_VERT = """
#version 330
uniform mat3 R; uniform vec3 t; uniform vec4 intr; uniform vec2 size; uniform vec2 clip;
in vec3 in_pos; in vec3 in_normal; in vec2 in_uv; in vec3 in_color;
out vec3 v_pos; out vec3 v_normal; out vec2 v_uv; out vec3 v_color;
void main() {
    vec3 p = R * in_pos + t;
    v_pos = p; v_normal = R * in_normal; v_uv = in_uv; v_color = in_color;
    float xn = 2.0 * (intr.x * p.x / p.z + intr.z + 0.5) / size.x - 1.0;
    float yn = 2.0 * (intr.y * p.y / p.z + intr.w + 0.5) / size.y - 1.0;
    float n = clip.x, f = clip.y;
    gl_Position = vec4(xn * p.z, yn * p.z, (p.z * (f + n) - 2.0 * f * n) / (f - n), p.z);
}
"""
_FRAG = """
#version 330
uniform sampler2D tex; uniform vec3 light_dir; uniform vec4 light; uniform vec3 tint;
in vec3 v_pos; in vec3 v_normal; in vec2 v_uv; in vec3 v_color;
layout(location = 0) out vec4 f_color;
void main() {
    vec3 n = normalize(v_normal); vec3 v = normalize(-v_pos);
    if (dot(n, v) < 0.0) n = -n;
    float ndl = max(dot(n, light_dir), 0.0);
    vec3 h = normalize(light_dir + v);
    float spec = ndl > 0.0 ? light.z * pow(max(dot(n, h), 0.0), light.w) : 0.0;
    vec3 albedo = texture(tex, v_uv).rgb * v_color * tint;
    // alpha carries the inverse depth (one read-back); the cleared 0 means infinitely far
    f_color = vec4(albedo * (light.x + light.y * ndl) + spec, 1.0 / v_pos.z);
}
"""


class GLRenderer:
    """moderngl renderer on a standalone headless context (EGL by default).

    Args:
        camera: output intrinsics.
        supersample: sub-pixels per pixel along each axis (anti-aliasing; depth takes the min).
        backend: moderngl context backend (``"egl"``; None lets moderngl choose).
        near: near clip distance, metres.
        far: far clip distance, metres.

    Raises:
        Exception: whatever moderngl raises when no context can be created.
    """

    def __init__(
        self,
        camera: PinholeCamera,
        supersample: int = 2,
        backend: str | None = "egl",
        near: float = 0.02,
        far: float = 20.0,
    ) -> None:
        import moderngl

        self.camera, self.supersample, self.near, self.far = camera, supersample, near, far
        kw = {"backend": backend} if backend else {}
        self.ctx = moderngl.create_standalone_context(**kw)
        self.prog = self.ctx.program(vertex_shader=_VERT, fragment_shader=_FRAG)
        big = camera.scaled(supersample)
        size = (big.width, big.height)
        self._color = self.ctx.texture(size, 4, dtype="f4")
        self.fbo = self.ctx.framebuffer(
            color_attachments=[self._color],
            depth_attachment=self.ctx.depth_renderbuffer(size),
        )
        self._white = self.ctx.texture((1, 1), 3, np.ones(3, np.float32).tobytes(), dtype="f4")
        self._meshes: dict[int, list] = {}
        self._textures: dict[int, tuple] = {}
        self.prog["intr"].value = (big.fx, big.fy, big.cx, big.cy)
        self.prog["size"].value = size
        self.prog["clip"].value = (near, far)

    def _texture(self, mesh: HeadMesh):  # noqa: ANN202 - moderngl.Texture
        """The GL texture of ``mesh`` (cached by texture array, shared by deformed meshes)."""
        if mesh.texture is None:
            return self._white
        key = id(mesh.texture)
        if key in self._textures and self._textures[key][0] is mesh.texture:
            return self._textures[key][1]
        if len(self._textures) >= 4:
            self._textures.pop(next(iter(self._textures)))[1].release()
        tex_arr = np.ascontiguousarray(mesh.texture[::-1], np.float32)  # row 0 = v = 0
        tex = self.ctx.texture(tex_arr.shape[1::-1], 3, tex_arr.tobytes(), dtype="f4")
        tex.build_mipmaps()
        tex.filter = (self.ctx.LINEAR_MIPMAP_LINEAR, self.ctx.LINEAR)
        self._textures[key] = (mesh.texture, tex)
        return tex

    def _upload(self, mesh: HeadMesh) -> tuple:
        """Vertex array and texture of ``mesh``.

        Geometry buffers are cached per face array: a mesh that shares its ``faces`` with an
        uploaded one (an expression or identity warp made with ``dataclasses.replace``) only
        rewrites the vertex buffer, and the texture is uploaded once per texture array.
        """
        key = id(mesh.faces)
        entry = self._meshes.get(key)
        if entry is None or entry[0] is not mesh.faces or entry[1].size != 44 * len(mesh.vertices):
            if len(self._meshes) >= 8:
                old = self._meshes.pop(next(iter(self._meshes)))
                for res in old[1:4]:
                    res.release()
            vbo = self.ctx.buffer(reserve=44 * len(mesh.vertices))
            ibo = self.ctx.buffer(np.ascontiguousarray(mesh.faces, np.int32).tobytes())
            vao = self.ctx.vertex_array(
                self.prog,
                [(vbo, "3f 3f 2f 3f", "in_pos", "in_normal", "in_uv", "in_color")],
                index_buffer=ibo,
                index_element_size=4,
            )
            entry = [mesh.faces, vbo, ibo, vao, None]
            self._meshes[key] = entry
        if entry[4] is not mesh:
            attrs = np.concatenate([mesh.vertices, mesh.normals, mesh.uv, mesh.colors], axis=1)
            entry[1].write(np.ascontiguousarray(attrs, np.float32).tobytes())
            entry[4] = mesh
        return entry[3], self._texture(mesh)

    def render(
        self,
        mesh: HeadMesh,
        rotation: np.ndarray,
        translation: np.ndarray,
        lighting: Lighting = Lighting(),  # noqa: B008 - frozen dataclass
        background: np.ndarray | None = None,
        tint: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> RenderOutput:
        """Render ``mesh`` at pose ``(rotation, translation)``.

        Args:
            mesh: the head.
            rotation: (3, 3) rotation head -> camera.
            translation: (3,) metres.
            lighting: the light.
            background: (H, W, 3) or (H, W) linear image behind the face, or None (black).
            tint: RGB albedo multiplier (skin tone).

        Returns:
            The :class:`RenderOutput`.
        """
        import moderngl

        vao, tex = self._upload(mesh)
        self.prog["R"].value = tuple(np.asarray(rotation, np.float64).T.ravel())
        self.prog["t"].value = tuple(np.asarray(translation, np.float64))
        self.prog["light_dir"].value = tuple(lighting.unit_direction())
        self.prog["light"].value = (
            lighting.ambient, lighting.diffuse, lighting.specular, lighting.shininess,
        )  # fmt: skip
        self.prog["tint"].value = tuple(float(c) for c in tint)
        self.fbo.use()
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(moderngl.DEPTH_TEST)
        tex.use(0)
        vao.render(moderngl.TRIANGLES)
        big = self.camera.scaled(self.supersample)
        shape = (big.height, big.width)
        rgba = np.frombuffer(self.fbo.read(components=4, dtype="f4"), np.float32).reshape(*shape, 4)
        inv_z = _block_reduce(rgba[..., 3], self.supersample, np.maximum)  # nearest surface
        rgba = rgba.copy()  # the read-back buffer is read-only; inv_z keeps the original
        rgba[..., 3] = rgba[..., 3] > 0  # coverage (premultiplied alpha)
        with np.errstate(divide="ignore"):
            z = np.float32(1.0) / inv_z
        image, alpha = _composite(rgba, background, self.supersample)
        return RenderOutput(image, z, alpha)

    def close(self) -> None:
        """Release the GL context."""
        self.ctx.release()


class NumbaRenderer:
    """Software renderer (numba rasteriser + numpy shading); same interface as GLRenderer.

    Args:
        camera: output intrinsics.
        supersample: sub-pixels per pixel along each axis.
        near: near clip distance, metres.
    """

    def __init__(self, camera: PinholeCamera, supersample: int = 2, near: float = 0.02) -> None:
        self.camera, self.supersample, self.near = camera, supersample, near
        self._pyramids: dict[int, tuple] = {}

    def _pyramid(self, mesh: HeadMesh) -> list[np.ndarray]:
        key = id(mesh)
        if key not in self._pyramids or self._pyramids[key][0] is not mesh:
            levels = [mesh.texture if mesh.texture is not None else np.ones((1, 1, 3), np.float32)]
            while min(levels[-1].shape[:2]) >= 4:
                t = levels[-1]
                h, w = t.shape[0] // 2 * 2, t.shape[1] // 2 * 2
                levels.append(t[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)))
            if len(self._pyramids) >= 8:
                self._pyramids.pop(next(iter(self._pyramids)))
            self._pyramids[key] = (mesh, levels)
        return self._pyramids[key][1]

    def render(
        self,
        mesh: HeadMesh,
        rotation: np.ndarray,
        translation: np.ndarray,
        lighting: Lighting = Lighting(),  # noqa: B008 - frozen dataclass
        background: np.ndarray | None = None,
        tint: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> RenderOutput:
        """Render ``mesh`` at a pose; see :meth:`GLRenderer.render`."""
        s = self.supersample
        big = self.camera.scaled(s)
        rot = np.asarray(rotation, np.float64)
        pc = mesh.vertices.astype(np.float64) @ rot.T + translation
        uv, z = project_points(mesh.vertices, rot, translation, big)
        depth, tri, bary = rasterize(np.column_stack([uv, z]), mesh.faces, big.width, big.height,
                                     self.near)  # fmt: skip
        rgba = np.zeros((big.height, big.width, 4), np.float32)
        hit = tri >= 0
        if hit.any():
            f = mesh.faces[tri[hit]]
            b = bary[hit][..., None]
            interp = lambda a: np.sum(a[f] * b, axis=1)  # noqa: E731
            levels = self._pyramid(mesh)
            extent = max(np.ptp(uv[:, 0]), np.ptp(uv[:, 1]), 1.0) / s
            lev = int(np.clip(np.log2(levels[0].shape[1] / (2.0 * extent)), 0, len(levels) - 1))
            albedo = sample_bilinear(levels[lev], interp(mesh.uv)) * interp(mesh.colors)
            albedo *= np.asarray(tint, np.float32)
            rgba[hit, :3] = shade(
                albedo, interp(mesh.normals) @ rot.T, interp(pc), lighting.unit_direction(),
                lighting.ambient, lighting.diffuse, lighting.specular, lighting.shininess,
            )  # fmt: skip
            rgba[hit, 3] = 1.0
        image, alpha = _composite(rgba, background, s)
        return RenderOutput(image, _block_reduce(depth, s, np.minimum), alpha)

    def close(self) -> None:
        """Nothing to release (interface parity with :class:`GLRenderer`)."""


Renderer = GLRenderer | NumbaRenderer


def make_renderer(
    camera: PinholeCamera, backend: str = "auto", supersample: int = 2
) -> GLRenderer | NumbaRenderer:
    """Create a renderer.

    Args:
        camera: output intrinsics.
        backend: ``"gl"`` (moderngl/EGL, error if unavailable), ``"numba"``, or ``"auto"`` (GL,
            falling back to numba when no EGL context can be made).
        supersample: sub-pixels per pixel along each axis.

    Returns:
        A renderer with ``render(...)`` and ``close()``.
    """
    if backend not in ("auto", "gl", "numba"):
        raise ValueError(f"unknown renderer backend {backend!r}")
    if backend in ("auto", "gl"):
        try:
            return GLRenderer(camera, supersample)
        except Exception:
            if backend == "gl":
                raise
    return NumbaRenderer(camera, supersample)
