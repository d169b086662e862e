"""3D head assets: textured meshes with 68 iBUG landmarks from ``menpo3d==0.8.6``'s sdist.

The source distribution of ``menpo3d`` 0.8.6 ships, under ``menpo3d/data/``:

* ``james.obj`` (+ ``james.obj.mtl``, ``james.jpg`` 2400x1600 texture): a textured head scan,
  6393 vertices, 6680 texture coordinates, 12228 triangles, units of millimetres;
* ``template.ply``: a binary-little-endian face template with per-vertex RGBA colour (a
  false-colour map, not skin; replaced by :data:`SKIN_ALBEDO`), 53349
  vertices, 106111 triangles, arbitrary units (~1e5 across);
* ``james.ljson`` / ``template.ljson``: 68 3D landmarks each (LJSON v3). ``template`` is in iBUG
  order; ``james`` groups the points differently (chin, eyes, brows, nose, ...), which
  :data:`JAMES_TO_IBUG` reorders.
* ``bunny.obj`` / ``bunny.ljson`` (not a face; unused).

The sdist is fetched once with ``pip download`` (no menpo3d import, no build) into the cache
directory ``$FACEALIGN_CACHE`` (default ``~/.cache/facealign_ros``). An already downloaded sdist
can be given offline through ``$FACEALIGN_MENPO3D_SDIST``.

Meshes are returned in the *head frame*: metres; x from the subject's right to their left
(image right when facing the camera), y down (towards the chin), z = x cross y (from the face
towards the back of the head); the origin is :data:`PIVOT_BEHIND_EYES_M` behind the midpoint of
the outer eye corners (a neck-like rotation pivot). With identity rotation and a positive z
translation the face looks straight into an OpenCV-style camera.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from facealign_ros.pip_fetch import cache_dir, pip_download

MENPO3D_VERSION = "0.8.6"
MENPO3D_SDIST_SHA256 = "96ad2c8b55b74e026cdc190cf6b1564ad7c8e6c53976cf897d6a1bf4940f084a"
DATA_FILES = (
    "james.obj",
    "james.obj.mtl",
    "james.jpg",
    "james.ljson",
    "template.ply",
    "template.ljson",
)
OUTER_EYE_DISTANCE_M = 0.095
"""Outer eye corner (iBUG 36-45) distance every mesh is scaled to (adult average ~9-10 cm)."""
HEAD_NAMES = ("james", "template")
"""Names accepted by :func:`load_head`."""
SKIN_ALBEDO = (0.62, 0.40, 0.30)
"""Linear RGB albedo given to meshes without a texture (a light-medium skin tone)."""
PIVOT_BEHIND_EYES_M = 0.09
"""Head-frame origin: this far behind (along +z) the midpoint of the outer eye corners."""

# james.ljson groups: chin 0-16, leye 17-22, reye 23-28, leyebrow 29-33, nose 34-42,
# reyebrow 43-47, mouth 48-67 ('l' = image left). Each group is already in iBUG's internal
# order; test_synth_assets checks the result geometrically.
JAMES_TO_IBUG = np.array(
    list(range(17))
    + [29, 30, 31, 32, 33]  # iBUG 17-21: brow on the image left (subject's right)
    + [43, 44, 45, 46, 47]  # iBUG 22-26
    + list(range(34, 43))  # nose 27-35
    + [17, 18, 19, 20, 21, 22]  # iBUG 36-41: eye on the image left
    + [23, 24, 25, 26, 27, 28]  # iBUG 42-47
    + list(range(48, 68)),  # mouth
    dtype=np.int64,
)


class AssetError(RuntimeError):
    """Raised when the head assets cannot be found, fetched or parsed."""


@dataclass(frozen=True, eq=False)
class HeadMesh:
    """A triangle mesh of a head with 68 iBUG landmarks, in the head frame (metres).

    Attributes:
        name: asset name (``"james"`` or ``"template"``).
        vertices: (V, 3) float32 positions, metres.
        faces: (F, 3) int32 vertex indices, counter-clockwise seen from outside.
        normals: (V, 3) float32 unit vertex normals (area weighted).
        uv: (V, 2) float32 texture coordinates in [0, 1] (v up, OpenGL style); zeros when the
            mesh has no texture.
        colors: (V, 3) float32 linear per-vertex albedo; multiplied with the texture.
        texture: (Ht, Wt, 3) float32 linear albedo, or None.
        landmarks: (68, 3) float32 iBUG landmark positions, metres.
        landmark_vertex: (68,) int64 index of the mesh vertex nearest each landmark.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    colors: np.ndarray
    texture: np.ndarray | None
    landmarks: np.ndarray
    landmark_vertex: np.ndarray


@dataclass(frozen=True)
class SdistFiles:
    """Data files taken from a pinned PyPI source distribution.

    Attributes:
        package: PyPI name.
        version: pinned version.
        sha256: SHA-256 of the ``.tar.gz`` (PyPI files never change once published).
        data_dir: folder of the files inside the archive, e.g. ``menpo3d/data``.
        files: file names to extract.
        env_var: environment variable that may name an already downloaded sdist (offline use).
    """

    package: str
    version: str
    sha256: str
    data_dir: str
    files: tuple[str, ...]
    env_var: str

    def target(self, root: Path) -> Path:
        """Cache folder the files are extracted to."""
        return root / f"{self.package}-{self.version}" / Path(self.data_dir).name


MENPO3D_FILES = SdistFiles("menpo3d", MENPO3D_VERSION, MENPO3D_SDIST_SHA256, "menpo3d/data",
                           DATA_FILES, "FACEALIGN_MENPO3D_SDIST")  # fmt: skip


def _download_sdist(spec: SdistFiles, dest: Path) -> Path:
    options = ["--no-binary", ":all:", "--no-build-isolation"]
    return pip_download(f"{spec.package}=={spec.version}", options, dest,
                        f"{spec.package}-{spec.version}.tar.gz", spec.env_var, AssetError,
                        timeout_s=600.0)  # fmt: skip


def fetch_sdist_files(spec: SdistFiles, root: Path | None = None) -> Path:
    """Make sure ``spec``'s files are in the cache and return their directory.

    Idempotent: returns at once when the files are already there. Otherwise the sdist is taken
    from ``$<spec.env_var>`` or downloaded with ``pip download``, checked against its SHA-256,
    and only the named files are extracted (atomically, via a temporary directory).

    Args:
        spec: what to fetch.
        root: cache directory; default :func:`cache_dir`.

    Raises:
        AssetError: when the sdist cannot be obtained or does not match.
    """
    root = cache_dir() if root is None else Path(root)
    out = spec.target(root)
    if all((out / f).is_file() for f in spec.files):
        return out
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
        tmp_path = Path(tmp)
        given = os.environ.get(spec.env_var)
        sdist = Path(given) if given else _download_sdist(spec, tmp_path)
        if not sdist.is_file():
            raise AssetError(f"{spec.env_var}={sdist} is not a file")
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if digest != spec.sha256:
            raise AssetError(
                f"{sdist}: sha256 {digest} is not the {spec.package} {spec.version} one"
            )
        stage = tmp_path / "data"
        stage.mkdir()
        prefix = f"{spec.package}-{spec.version}/{spec.data_dir}/"
        with tarfile.open(sdist, "r:gz") as tar:
            for name in spec.files:
                try:
                    member = tar.getmember(prefix + name)
                except KeyError as exc:
                    raise AssetError(f"{sdist}: no {prefix + name}") from exc
                src = tar.extractfile(member)
                if src is None:
                    raise AssetError(f"{sdist}: {name} is not a regular file")
                (stage / name).write_bytes(src.read())
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    return out


def fetch_assets(root: Path | None = None) -> Path:
    """Make sure the menpo3d data files are in the cache and return their directory.

    See :func:`fetch_sdist_files` (:data:`MENPO3D_FILES`; offline:
    ``$FACEALIGN_MENPO3D_SDIST``).

    Raises:
        AssetError: when the sdist cannot be obtained or does not match.
    """
    return fetch_sdist_files(MENPO3D_FILES, root)


def srgb_to_linear(img: np.ndarray) -> np.ndarray:
    """Convert sRGB values in [0, 1] to linear intensity (IEC 61966-2-1), float32."""
    img = np.asarray(img, dtype=np.float32)
    return np.where(img <= 0.04045, img / 12.92, ((img + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _read_ljson(path: Path) -> np.ndarray:
    data = json.loads(path.read_text())
    pts = np.asarray(data["groups"]["LJSON"]["landmarks"]["points"], dtype=np.float64)
    if pts.shape != (68, 3):
        raise AssetError(f"{path}: expected 68 3D landmarks, got {pts.shape}")
    return pts


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a triangle OBJ with ``f v/vt`` faces; split vertices so each has one uv."""
    v, vt, f = [], [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            v.append(line.split()[1:4])
        elif line.startswith("vt "):
            vt.append(line.split()[1:3])
        elif line.startswith("f "):
            corners = [c.split("/") for c in line.split()[1:]]
            if len(corners) != 3 or any(len(c) < 2 or not c[1] for c in corners):
                raise AssetError(f"{path}: only textured triangles are supported")
            f.append([(int(c[0]) - 1, int(c[1]) - 1) for c in corners])
    pos, tex = np.asarray(v, np.float64), np.asarray(vt, np.float64)
    pairs = np.asarray(f, np.int64).reshape(-1, 2)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    return pos[uniq[:, 0]], tex[uniq[:, 1]], inv.reshape(-1, 3).astype(np.int32)


def _read_ply(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse the binary little-endian PLY of the template (xyz float, rgba uchar, triangles)."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise AssetError(f"{path}: not a binary little-endian PLY")
    counts = {ln.split()[1]: int(ln.split()[2]) for ln in header if ln.startswith("element")}
    vdt = np.dtype([("xyz", "<f4", 3), ("rgba", "u1", 4)])
    verts = np.frombuffer(raw, vdt, counts["vertex"], end)
    fdt = np.dtype([("n", "u1"), ("idx", "<i4", 3)])
    faces = np.frombuffer(raw, fdt, counts["face"], end + vdt.itemsize * counts["vertex"])
    if not np.all(faces["n"] == 3):
        raise AssetError(f"{path}: only triangle faces are supported")
    rgb = verts["rgba"][:, :3].astype(np.float32) / 255.0
    return verts["xyz"].astype(np.float64), rgb, faces["idx"].astype(np.int32)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals.

    Args:
        vertices: (V, 3) positions.
        faces: (F, 3) int vertex indices, counter-clockwise seen from outside.

    Returns:
        (V, 3) float32 unit normals pointing outwards.
    """
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros(vertices.shape, np.float64)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return n.astype(np.float32)


def _head_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Rotation (rows = head axes in source coords), origin and scale to the head frame."""
    x = landmarks[45] - landmarks[36]
    scale = OUTER_EYE_DISTANCE_M / np.linalg.norm(x)
    x /= np.linalg.norm(x)
    y = landmarks[8] - 0.5 * (landmarks[39] + landmarks[42])
    y -= x * (x @ y)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    rot = np.stack([x, y, z])
    origin = 0.5 * (landmarks[36] + landmarks[45]) + z * (PIVOT_BEHIND_EYES_M / scale)
    return rot, origin, float(scale)


def _finish(name: str, pos, uv, colors, faces, texture, landmarks) -> HeadMesh:
    rot, origin, scale = _head_frame(landmarks)
    v = ((pos - origin) @ rot.T) * scale
    lm = ((landmarks - origin) @ rot.T) * scale
    # faces must wind counter-clockwise seen from outside: normals point away from the centroid
    n = vertex_normals(v, faces)
    if np.mean(np.sum(n * (v - v.mean(0)), axis=1)) < 0:
        faces = faces[:, ::-1].copy()
        n = -n
    d2 = ((lm[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    return HeadMesh(
        name=name,
        vertices=v.astype(np.float32),
        faces=np.ascontiguousarray(faces, dtype=np.int32),
        normals=n,
        uv=np.asarray(uv, np.float32),
        colors=np.asarray(colors, np.float32),
        texture=texture,
        landmarks=lm.astype(np.float32),
        landmark_vertex=np.argmin(d2, axis=1).astype(np.int64),
    )


def _load_texture(path: Path, max_size: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is a training dependency
        raise AssetError("Pillow is needed to read the head texture (pip install pillow)") from exc
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        im = im.convert("RGB")
        if max(im.size) > max_size:
            k = max_size / max(im.size)
            im = im.resize((round(im.width * k), round(im.height * k)), Image.Resampling.LANCZOS)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return srgb_to_linear(arr)


@lru_cache(maxsize=4)
def load_head(name: str = "james", root: Path | None = None, max_texture: int = 1024) -> HeadMesh:
    """Load one head asset in the head frame (fetching the sdist when needed).

    Args:
        name: ``"james"`` (textured scan) or ``"template"`` (vertex-coloured template).
        root: cache directory; default :func:`cache_dir`.
        max_texture: the texture is downsampled so that its longer side is at most this (px).

    Returns:
        The :class:`HeadMesh`.

    Raises:
        AssetError: unknown name, or assets unavailable.
    """
    data = fetch_assets(root)
    if name == "james":
        pos, uv, faces = _read_obj(data / "james.obj")
        lm = _read_ljson(data / "james.ljson")[JAMES_TO_IBUG]
        colors = np.ones((pos.shape[0], 3), np.float32)
        tex = _load_texture(data / "james.jpg", max_texture)
        return _finish(name, pos, uv, colors, faces, tex, lm)
    if name == "template":
        pos, _, faces = _read_ply(data / "template.ply")
        lm = _read_ljson(data / "template.ljson")
        uv = np.zeros((pos.shape[0], 2), np.float32)
        # the template's vertex colours are a false-colour map, not skin: use a skin albedo
        colors = np.broadcast_to(np.asarray(SKIN_ALBEDO, np.float32), (pos.shape[0], 3))
        return _finish(name, pos, uv, colors, faces, None, lm)
    raise AssetError(f"unknown head asset {name!r}; choose 'james' or 'template'")


def ellipsoid_head(
    radii: tuple[float, float, float] = (0.075, 0.1, 0.09), n_lat: int = 32, n_lon: int = 64
) -> HeadMesh:
    """A procedural stand-in head (ellipsoid, uniform skin albedo) that needs no download.

    Its 68 "landmarks" are mesh vertices on the front half (z < 0), spread over a grid; they
    have no facial meaning and serve geometry tests and smoke runs.

    Args:
        radii: (x, y, z) semi-axes, metres; centred on the head origin.
        n_lat: latitude rings.
        n_lon: longitude segments.

    Returns:
        The :class:`HeadMesh` (no texture).
    """
    lat = np.linspace(0, np.pi, n_lat + 1)
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    unit = np.stack([np.sin(la) * np.cos(lo), -np.cos(la), np.sin(la) * np.sin(lo)], -1)
    v = (unit * np.asarray(radii)).reshape(-1, 3)
    idx = np.arange(v.shape[0]).reshape(n_lat + 1, n_lon)
    a, b = idx[:-1], np.roll(idx[:-1], -1, axis=1)
    c, d = idx[1:], np.roll(idx[1:], -1, axis=1)
    faces = np.concatenate([np.stack([a, b, c], -1), np.stack([b, d, c], -1)]).reshape(-1, 3)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2])]
    n = vertex_normals(v, faces)
    if np.mean(np.sum(n * v, axis=1)) < 0:
        faces, n = faces[:, ::-1].copy(), -n
    rings = np.linspace(n_lat * 0.3, n_lat * 0.7, 4).round().astype(int)
    cols = np.linspace(n_lon * 0.6, n_lon * 0.9, 17).round().astype(int)  # front (z < 0)
    lm_idx = idx[np.ix_(rings, cols)].reshape(-1)[:68]
    return HeadMesh(
        name="ellipsoid",
        vertices=v.astype(np.float32),
        faces=faces.astype(np.int32),
        normals=n,
        uv=np.zeros((v.shape[0], 2), np.float32),
        colors=np.broadcast_to(np.asarray(SKIN_ALBEDO, np.float32), v.shape).copy(),
        texture=None,
        landmarks=v[lm_idx].astype(np.float32),
        landmark_vertex=lm_idx.astype(np.int64),
    )
