"""Head assets from menpo3d's sdist (training.synth.assets); skipped when they can't be fetched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.synth.assets import (
    OUTER_EYE_DISTANCE_M,
    AssetError,
    cache_dir,
    fetch_assets,
    load_head,
)
from training.synth.render import NumbaRenderer, PinholeCamera, landmark_visibility, project_points


@pytest.fixture(scope="module", params=["james", "template"])
def head(request):
    try:
        return load_head(request.param)
    except AssetError as exc:
        pytest.skip(f"menpo3d assets unavailable: {exc}")


def test_cache_dir_follows_env(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEALIGN_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path


def test_fetch_is_idempotent(head) -> None:
    a = fetch_assets()
    stamp = [(p.name, p.stat().st_mtime_ns) for p in sorted(a.iterdir())]
    assert fetch_assets() == a
    assert stamp == [(p.name, p.stat().st_mtime_ns) for p in sorted(a.iterdir())]


def test_bad_sdist_gives_clear_error(monkeypatch, tmp_path: Path) -> None:
    bogus = tmp_path / "menpo3d-0.8.6.tar.gz"
    bogus.write_bytes(b"not a tarball")
    monkeypatch.setenv("FACEALIGN_MENPO3D_SDIST", str(bogus))
    with pytest.raises(AssetError, match="sha256"):
        fetch_assets(tmp_path / "cache")
    assert not (tmp_path / "cache" / "menpo3d-0.8.6").exists()


def test_mesh_arrays(head) -> None:
    v, f = head.vertices, head.faces
    assert v.dtype == np.float32 and v.shape[1] == 3 and f.dtype == np.int32 and f.shape[1] == 3
    assert f.min() >= 0 and f.max() < len(v)
    assert head.landmarks.shape == (68, 3)
    np.testing.assert_allclose(np.linalg.norm(head.normals, axis=1), 1.0, atol=1e-4)
    dist = np.linalg.norm(head.landmarks - v[head.landmark_vertex], axis=1)
    assert dist.max() < 0.006  # the 3D landmarks sit on the surface
    if head.texture is not None:
        assert head.texture.ndim == 3 and head.uv.min() >= 0 and head.uv.max() <= 1


def test_landmarks_are_in_ibug_order_in_the_head_frame(head) -> None:
    lm = head.landmarks
    np.testing.assert_allclose(np.linalg.norm(lm[45] - lm[36]), OUTER_EYE_DISTANCE_M, rtol=1e-5)
    x, y, z = lm.T
    assert np.all(np.diff(x[0:17]) > 0)  # jaw from image left to right
    assert y[8] > y[30] > y[27] and y[8] == y[0:17].max()  # chin lowest, nose below the bridge
    assert np.all(np.diff(x[17:22]) > 0) and np.all(np.diff(x[22:27]) > 0)  # brows
    assert x[21] < x[22] and y[19] < y[37]  # brows above the eyes
    assert x[36] < x[39] < x[42] < x[45]  # eye corners, left to right
    assert y[37] < y[41] and y[44] < y[46]  # upper lids above lower lids
    assert x[48] < x[51] < x[54] and y[51] < y[57]  # mouth corners, upper/lower lip
    assert z[30] == z.min()  # nose tip nearest to a camera looking at the face


def test_frontal_render_puts_landmarks_on_the_face(head) -> None:
    cam = PinholeCamera()
    rot, t = np.eye(3), np.array([0.0, 0.0, 0.55])
    out = NumbaRenderer(cam).render(head, rot, t)
    uv, z = project_points(head.landmarks, rot, t, cam)
    vis = landmark_visibility(uv, z, out.depth, cam.fx)
    assert vis[17:68].all()  # brows, nose, eyes and mouth face the camera
    px = np.rint(uv).astype(int)
    assert np.all(out.alpha[px[17:, 1], px[17:, 0]] > 0.5)
    # jaw points sit on the silhouette seen from the front: within 2 px of the face
    near = [out.alpha[r - 2 : r + 3, c - 2 : c + 3].max() for c, r in px[:17]]
    assert min(near) > 0.5
