"""`facealign label`: mapping, scoring, the teacher protocol and the labeller, with a fake teacher.

The fake teacher is a small script run by this interpreter that speaks the worker protocol and
answers meshes built from known 70-point shapes, so labels can be checked exactly. One test
runs the real MediaPipe teacher when its environment exists (skipped otherwise).
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from facealign_ros import topics
from facealign_ros.bag import BagError, BagReader, BagWriter, msg_class
from facealign_ros.face.landmarks import REP155_70, flip_landmarks, inter_ocular
from facealign_ros.face.pose import default_intrinsics, mean_face_68
from facealign_ros.messages import landmarks_from_msg, stamp_ns
from training.label import worker
from training.label.bagcopy import RawBagReader
from training.label.labeler import (
    LABEL_METADATA,
    LABEL_QUALITY,
    LabelError,
    LabelOptions,
    label_bag,
)
from training.label.mapping import MESH_MIRROR, MESH_POINTS, MESH_TO_REP155, mesh_to_rep155
from training.label.scoring import FLIP_NME_AT_ZERO, flip_nme, frame_score, label_frame
from training.label.teacher import TeacherError, TeacherProcess, resolve_python
from training.synth.bagout import EventPacketizer, image_msgs

W, H = 96, 72
START = 1_700_000_000 * 1_000_000_000
FRAME_NS = 33_000_000


def face70(shift: float = 0.0) -> np.ndarray:
    """A plausible (70, 2) face in a W x H image: the mean face 0.45 m in front of the camera."""
    K = default_intrinsics(W, H)
    p = mean_face_68() + [shift * 0.004, 0.0, 0.45]
    uv = (p @ K.T)[:, :2] / (p @ K.T)[:, 2:]
    pupils = np.stack([uv[36:42].mean(0), uv[42:48].mean(0)])
    return np.concatenate([uv, pupils])


def mesh_from_rep155(points: np.ndarray) -> np.ndarray:
    """A (478, 3) mesh whose table vertices sit on ``points`` (others at the centroid)."""
    mesh = np.zeros((MESH_POINTS, 3))
    mesh[:, :2] = points.mean(axis=0)
    for i, verts in enumerate(MESH_TO_REP155):
        mesh[list(verts), :2] = points[i]
    return mesh


# --- mapping -------------------------------------------------------------------------------


def test_table_vertices_are_disjoint_and_in_range() -> None:
    used = [v for verts in MESH_TO_REP155 for v in verts]
    assert len(MESH_TO_REP155) == 70 and len(used) == len(set(used))
    assert all(0 <= v < MESH_POINTS for v in used)


@pytest.mark.parametrize(
    ("rep155", "vertex"),
    [(36, 33), (45, 263), (39, 133), (42, 362), (8, 152), (30, 4), (48, 61), (54, 291),
     (68, 468), (69, 473)],
)  # fmt: skip
def test_table_known_answers(rep155: int, vertex: int) -> None:
    # subject's right = mesh "right" (33..133, iris 468) = iBUG 36..41 and pupil 68
    assert vertex in MESH_TO_REP155[rep155]


def test_mapping_round_trips_a_known_shape() -> None:
    pts = face70()
    np.testing.assert_allclose(mesh_to_rep155(mesh_from_rep155(pts)), pts, atol=1e-9)
    batch = np.stack([mesh_from_rep155(pts), mesh_from_rep155(pts + 1)])
    np.testing.assert_allclose(mesh_to_rep155(batch)[1], pts + 1, atol=1e-9)
    with pytest.raises(ValueError, match="478"):
        mesh_to_rep155(np.zeros((468, 3)))


def test_table_is_mirror_symmetric() -> None:
    flip = REP155_70.flip
    for i, verts in enumerate(MESH_TO_REP155):
        assert sorted(MESH_MIRROR[v] for v in verts) == sorted(MESH_TO_REP155[flip[i]])
    assert all(MESH_MIRROR[MESH_MIRROR[v]] == v for v in MESH_MIRROR)
    # numerically: the mapping of a mirrored mesh is the mirrored mapping
    rng = np.random.default_rng(0)
    mesh = rng.uniform(0, W, (MESH_POINTS, 3))
    mirrored = mesh.copy()
    for v, m in MESH_MIRROR.items():
        mirrored[v] = mesh[m]
    mirrored[:, 0] = (W - 1) - mirrored[:, 0]
    expect = flip_landmarks(mesh_to_rep155(mesh), W, REP155_70)
    np.testing.assert_allclose(mesh_to_rep155(mirrored), expect, atol=1e-9)


# --- scoring -------------------------------------------------------------------------------


def test_frame_score_known_answers() -> None:
    assert frame_score(0.9, 0.0) == pytest.approx(0.9)
    assert frame_score(1.0, FLIP_NME_AT_ZERO / 2) == pytest.approx(0.5)
    assert frame_score(1.0, 1.0) == 0.0 and frame_score(0.2, 0.0) == pytest.approx(0.2)
    pts = face70()
    iod = float(inter_ocular(pts, REP155_70))
    assert flip_nme(pts, pts) == 0.0
    assert flip_nme(pts, pts + [0.1 * iod, 0.0]) == pytest.approx(0.1)


class _ListTeacher:
    """In-process fake: answers from a list of (mesh px or None, score)."""

    def __init__(self, replies: list) -> None:
        self.replies = list(replies)

    def infer(self, rgb: np.ndarray):
        from training.label.teacher import TeacherReply

        mesh, score = self.replies.pop(0)
        return TeacherReply(mesh, score)


def test_label_frame_averages_both_passes_and_scores_disagreement() -> None:
    pts = face70()
    rgb = np.zeros((H, W, 3), np.uint8)
    mirror = mesh_from_rep155(flip_landmarks(pts, W, REP155_70))
    good = label_frame(_ListTeacher([(mesh_from_rep155(pts), 0.9), (mirror, 0.8)]), rgb)
    np.testing.assert_allclose(good.points, pts, atol=1e-9)
    assert good.flip_nme == pytest.approx(0.0) and good.score == pytest.approx(0.8)
    shifted = mesh_from_rep155(flip_landmarks(pts + [3.0, 0.0], W, REP155_70))
    bad = label_frame(_ListTeacher([(mesh_from_rep155(pts), 0.9), (shifted, 0.9)]), rgb)
    np.testing.assert_allclose(bad.points, pts + [1.5, 0.0], atol=1e-9)
    assert bad.flip_nme > 0.05 and bad.score < good.score
    none = label_frame(_ListTeacher([(None, 0.0)]), rgb)
    assert none.score == 0.0 and none.reason == "no face" and np.isnan(none.points).all()


# --- the worker protocol -------------------------------------------------------------------


def test_worker_serve_speaks_the_protocol() -> None:
    class Fake:
        def infer(self, rgb: np.ndarray) -> tuple[int, float, bytes]:
            if rgb[0, 0, 0] == 1:
                raise RuntimeError("bad pixel")
            if rgb[0, 0, 0] == 2:
                return worker.NO_FACE, 0.0, b""
            mesh = np.full((worker.N_MESH, 3), rgb.shape[1], np.float32)
            return worker.FACE, 0.75, mesh.tobytes()

    img = np.zeros((4, 5, 3), np.uint8)
    req = b"".join(
        worker.REQUEST.pack(worker.REQUEST_MAGIC, 4, 5) + (img + k).tobytes() for k in (0, 1, 2)
    )
    out = io.BytesIO()
    worker.serve(io.BytesIO(req), out, Fake())
    data = out.getvalue()
    replies = []
    while data:
        magic, status, score, n = worker.REPLY.unpack_from(data)
        replies.append((magic, status, score, data[worker.REPLY.size : worker.REPLY.size + n]))
        data = data[worker.REPLY.size + n :]
    assert [r[1] for r in replies] == [worker.FACE, worker.FAILED, worker.NO_FACE]
    assert replies[0][2] == pytest.approx(0.75) and len(replies[0][3]) == 478 * 12
    assert b"bad pixel" in replies[1][3] and replies[2][3] == b""
    assert all(r[0] == worker.REPLY_MAGIC for r in replies)


FAKE_WORKER = """
import sys, os, struct, time
import numpy as np
MODE, TABLE = {mode!r}, {table!r}
out = os.fdopen(os.dup(1), "wb")
if MODE == "silent":
    time.sleep(60)
out.write(b"FAT1" + struct.pack("<I", 2) + b"{{}}"); out.flush()
tab = np.load(TABLE) if TABLE else None
inp = sys.stdin.buffer
while True:
    head = inp.read(12)
    if len(head) < 12:
        break
    _, h, w = struct.unpack("<4sII", head)
    img = np.frombuffer(inp.read(h * w * 3), np.uint8).reshape(h, w, 3)
    if MODE == "crash":
        sys.stderr.write("fake teacher: boom\\n"); sys.stderr.flush(); sys.exit(3)
    if MODE == "garbage":
        out.write(b"nonsense" * 4); out.flush(); continue
    if MODE == "hang":
        time.sleep(60)
    mirrored = img[0, 0, 0] == 0
    code = int(img[0, -1, 0] if mirrored else img[0, 0, 0]) - 1
    status, score = int(tab["status"][code]), float(tab["score"][code])
    mesh = tab["mirror" if mirrored else "mesh"][code].astype("<f4")
    payload = (mesh.tobytes(), b"", b"fake failure")[status]
    out.write(struct.pack("<4sIfI", b"FAR1", status, score, len(payload)) + payload); out.flush()
"""


def fake_worker(tmp_path: Path, mode: str = "ok", table: Path | None = None) -> Path:
    path = tmp_path / f"fake_worker_{mode}.py"
    path.write_text(FAKE_WORKER.format(mode=mode, table=str(table) if table else ""))
    return path


def _normalised(mesh_px: np.ndarray) -> np.ndarray:
    """Pixel-centre mesh -> the worker's normalised coordinates."""
    out = mesh_px.copy()
    out[:, 0] = (out[:, 0] + 0.5) / W
    out[:, 1] = (out[:, 1] + 0.5) / H
    return out


# Frames of the test bag: (status, detector score, shift of the mirror pass in px)
FRAMES = [(0, 0.95, 0.0), (0, 0.9, 0.0), (0, 0.3, 0.0), (1, 0.0, 0.0), (0, 0.9, 6.0), (0, 0.8, 0.0),
          (2, 0.0, 0.0)]  # fmt: skip
MARKED = [False, False, True, True, True, False, True]


def make_table(tmp_path: Path) -> Path:
    """The fake teacher's answers for the frames of :func:`make_bag`."""
    meshes, mirrors = [], []
    for k, (_, _, shift) in enumerate(FRAMES):
        pts = face70(shift=k)
        meshes.append(_normalised(mesh_from_rep155(pts)))
        back = flip_landmarks(pts + [shift, 0.0], W, REP155_70)
        mirrors.append(_normalised(mesh_from_rep155(back)))
    path = tmp_path / "table.npz"
    np.savez(path, mesh=np.stack(meshes), mirror=np.stack(mirrors),
             status=[f[0] for f in FRAMES], score=[f[1] for f in FRAMES])  # fmt: skip
    return path


def make_bag(path: Path, storage: str = "mcap", *, image: bool = True, bad: bool = False,
             gt: bool = False) -> Path:  # fmt: skip
    """A tiny recording: events, coded RGB frames, camera info and an unrelated topic."""
    K = default_intrinsics(W, H)
    with BagWriter(path, storage=storage) as bag:
        bag.add_topic(topics.EVENTS, "event_camera_msgs/msg/EventPacket")
        bag.add_topic(topics.CAMERA_INFO, "sensor_msgs/msg/CameraInfo")
        bag.add_topic("/chatter", "std_msgs/msg/String")
        if image:
            bag.add_topic(topics.IMAGE, "sensor_msgs/msg/Image")
        if gt:
            bag.add_topic(topics.GT_LANDMARKS, "hri_msgs/msg/FacialLandmarks")
        pk = EventPacketizer(W, H, START)
        rng = np.random.default_rng(1)
        for k in range(len(FRAMES)):
            t = START + k * FRAME_NS
            ev = np.zeros(50, dtype=[("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])
            ev["t"] = np.sort(rng.integers(k * FRAME_NS, (k + 1) * FRAME_NS, 50))
            ev["x"], ev["y"], ev["p"] = rng.integers(0, W, 50), rng.integers(0, H, 50), 1
            from facealign_ros.events import EVENT_DTYPE

            for stamp, msg in pk.push(ev.astype(EVENT_DTYPE), (k + 1) * FRAME_NS):
                bag.write(topics.EVENTS, stamp, msg)
            rgb = np.full((H, W, 3), 90, np.uint8)
            rgb[0, 0, 0], rgb[0, -1, 0] = k + 1, 0
            img, info = image_msgs(t, rgb, K)
            if bad and k == 1:
                img.encoding = "32FC1"
            if image:
                bag.write(topics.IMAGE, t, img)
            bag.write(topics.CAMERA_INFO, t, info)
            bag.write("/chatter", t + 1, msg_class("std_msgs/msg/String")(data=f"hello {k}"))
    return path


def raw_by_topic(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    out: dict[str, list[tuple[int, bytes]]] = {}
    with RawBagReader(path) as bag:
        for conn, t, raw in bag.raw_messages():
            out.setdefault(conn.topic, []).append((t, raw))
    return out


def test_teacher_process_round_trip_with_a_fake_worker(tmp_path: Path) -> None:
    table = make_table(tmp_path)
    rgb = np.full((H, W, 3), 90, np.uint8)
    rgb[0, 0, 0] = 1
    with TeacherProcess(sys.executable, fake_worker(tmp_path, table=table)) as teacher:
        reply = teacher.infer(rgb)
        np.testing.assert_allclose(mesh_to_rep155(reply.mesh), face70(0), atol=1e-3)
        assert reply.score == pytest.approx(0.95)
        rgb[0, 0, 0] = 4
        assert teacher.infer(rgb).mesh is None  # frame 3: no face
        with pytest.raises(ValueError, match="uint8"):
            teacher.infer(rgb.astype(np.float32))


@pytest.mark.parametrize(
    ("mode", "expect"),
    [("crash", "boom"), ("garbage", "garbled"), ("hang", "time limit"), ("silent", "time limit")],
)
def test_teacher_failures_are_clear_and_reap_the_worker(
    tmp_path: Path, mode: str, expect: str
) -> None:
    teacher = TeacherProcess(sys.executable, fake_worker(tmp_path, mode), start_timeout_s=1.5,
                             frame_timeout_s=1)  # fmt: skip
    with pytest.raises(TeacherError, match=expect) as info, teacher:
        pid = teacher._proc.pid
        teacher.infer(np.zeros((H, W, 3), np.uint8))
    assert "fake_worker" in str(info.value)
    assert teacher._proc is None
    if mode != "silent":
        with pytest.raises(ProcessLookupError):  # reaped: not even a zombie is left
            os.kill(pid, 0)


# --- the labeller --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    tmp = tmp_path_factory.mktemp("label")
    src = make_bag(tmp / "rec")
    out = tmp / "rec_labelled"
    with TeacherProcess(sys.executable, fake_worker(tmp, table=make_table(tmp))) as teacher:
        stats = label_bag(src, out, teacher, LabelOptions(), teacher_info={"fake": True})
    return src, out, stats


def test_output_keeps_every_original_message_byte_identical(labelled: tuple) -> None:
    src, out, stats = labelled
    before, after = raw_by_topic(src), raw_by_topic(out)
    for topic, msgs in before.items():
        assert after[topic] == msgs, topic
    added = set(after) - set(before)
    assert added == {topics.GT_LANDMARKS, topics.GT_HEAD_POSE, LABEL_QUALITY, LABEL_METADATA}
    assert stats.messages_copied == sum(len(m) for m in before.values())


def test_labels_marks_and_quality(labelled: tuple) -> None:
    src, out, stats = labelled
    counts = (stats.images, stats.labelled, stats.marked, stats.no_face, stats.teacher_failures)
    assert counts == (7, 7, 4, 1, 1)
    with RawBagReader(out) as bag:
        gt = [
            (stamp_ns(m), *landmarks_from_msg(m)) for _, _, m in bag.messages(topics.GT_LANDMARKS)
        ]
        poses = [stamp_ns(m) for _, _, m in bag.messages(topics.GT_HEAD_POSE)]
        quality = [json.loads(m.data) for _, _, m in bag.messages(LABEL_QUALITY)]
        meta = [json.loads(m.data) for _, _, m in bag.messages(LABEL_METADATA)]
        images = [stamp_ns(m) for _, _, m in bag.messages(topics.IMAGE)]
    assert [g[0] for g in gt] == images  # at the image stamps
    assert [q["marked"] for q in quality] == MARKED
    for k, (_, xy, c) in enumerate(gt):
        if MARKED[k]:
            assert np.all(c == 0)
        else:
            assert np.all(c == 1)
            np.testing.assert_allclose(xy, face70(shift=k), atol=2e-3)
    assert poses == [images[k] for k in range(7) if not MARKED[k]]
    assert quality[3]["reason"] == "no face" and quality[4]["flip_nme"] > 0.05
    assert meta[0]["stats"]["marked"] == 4 and meta[0]["teacher"]["fake"] is True
    assert quality[6]["reason"] == "teacher failed: fake failure"


def test_bag_arrays_skips_marked_frames(labelled: tuple) -> None:
    from training.data import load_bag_arrays

    _, out, _ = labelled
    arrays = load_bag_arrays(out, cache=False)
    keep = [k for k in range(7) if not MARKED[k]]
    assert arrays.frames.shape[0] == 7
    np.testing.assert_array_equal(arrays.gt_stamps, arrays.frame_stamps[keep])
    np.testing.assert_allclose(arrays.gt_points[1], face70(shift=1), atol=2e-3)
    assert arrays.pose_stamps.size == len(keep)


def test_every_n_sqlite_output_and_bad_images(tmp_path: Path) -> None:
    src = make_bag(tmp_path / "rec", "sqlite3", bad=True)
    out = tmp_path / "out"
    with TeacherProcess(sys.executable, fake_worker(tmp_path, table=make_table(tmp_path))) as t:
        stats = label_bag(src, out, t, LabelOptions(every=1, storage="mcap"))
        every = label_bag(src, tmp_path / "out2", t, LabelOptions(every=4))
    assert stats.bad_images == 1 and stats.marked == 5  # the bad frame 1 is marked too
    assert "32FC1" in stats.bad_examples[0]
    assert list(out.glob("*.mcap")) and list((tmp_path / "out2").glob("*.db3"))
    assert (every.images, every.labelled) == (7, 2)
    assert raw_by_topic(tmp_path / "out2")[topics.IMAGE] == raw_by_topic(src)[topics.IMAGE]


def test_refuses_existing_output_and_existing_ground_truth(tmp_path: Path) -> None:
    src = make_bag(tmp_path / "rec", gt=True)
    out = tmp_path / "out"
    out.mkdir()
    worker_path = fake_worker(tmp_path, table=make_table(tmp_path))
    with TeacherProcess(sys.executable, worker_path) as teacher:
        with pytest.raises(LabelError, match="exists"):
            label_bag(src, out, teacher)
        with pytest.raises(LabelError, match="ground truth"):
            label_bag(src, tmp_path / "new", teacher)
        with pytest.raises(LabelError, match="input"):
            label_bag(src, src, teacher, LabelOptions(force=True))
        label_bag(src, out, teacher, LabelOptions(force=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["rec", "out", "table.npz", worker_path.name]
    )
    assert len(raw_by_topic(out)[topics.GT_LANDMARKS]) == 7  # replaced, not duplicated


def test_missing_image_topic_and_corrupt_bags(tmp_path: Path) -> None:
    src = make_bag(tmp_path / "noimg", image=False)
    with pytest.raises(LabelError) as info:
        label_bag(src, tmp_path / "out", _ListTeacher([]))
    text = str(info.value)
    assert "noimg" in text and topics.IMAGE in text and "/chatter" in text
    # a truncated recording: the error names the file, and nothing is left behind
    good = make_bag(tmp_path / "trunc")
    mcap = next(good.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    teacher = _ListTeacher([(None, 0.0)] * 20)
    with pytest.raises(BagError, match="trunc"):
        label_bag(good, tmp_path / "out", teacher)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("rosbag2_bagfile_information: [garbage")
    with pytest.raises(BagError, match="junk"):
        label_bag(tmp_path / "junk", tmp_path / "out", teacher)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- the command ---------------------------------------------------------------------------


def test_cli_missing_teacher_says_what_to_install(tmp_path: Path, capsys, monkeypatch) -> None:
    from facealign_ros.cli import main

    src = make_bag(tmp_path / "rec")
    rc = main(["label", str(src), "-o", str(tmp_path / "o"), "--teacher-python", "/nope/python"])
    err = capsys.readouterr().err
    assert rc == 2 and "/nope/python" in err
    assert "facealign label --install-teacher" in err and "pip install mediapipe==0.10.21" in err
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACEALIGN_TEACHER_PYTHON", raising=False)
    assert main(["label", str(src), "-o", str(tmp_path / "o")]) == 2
    assert "facealign label --install-teacher" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_reports_missing_topic(tmp_path: Path, capsys) -> None:
    from facealign_ros.cli import main

    src = make_bag(tmp_path / "rec")
    rc = main(["label", str(src), "-o", str(tmp_path / "o"), "--teacher-python", sys.executable,
               "--image-topic", "/cam/rgb"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "/cam/rgb" in err and str(src) in err and topics.IMAGE in err


# --- the real teacher ----------------------------------------------------------------------


def _real_teacher() -> Path | None:
    try:
        return resolve_python()
    except TeacherError:
        return None


@pytest.mark.slow
@pytest.mark.skipif(_real_teacher() is None, reason="teacher venv not installed")
def test_real_teacher_on_a_synthetic_frame(tmp_path: Path) -> None:
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    src = tmp_path / "synth"
    write_synth_bag(src, SceneConfig(seed=21, seconds=0.1, light="normal", motion="slow"))
    with TeacherProcess(_real_teacher()) as teacher:
        assert teacher.info["mediapipe"] == "0.10.21"
        label_bag(src, tmp_path / "out", teacher, LabelOptions(force=True))
    with RawBagReader(src) as bag:
        truth = [landmarks_from_msg(m)[0] for _, _, m in bag.messages(topics.GT_LANDMARKS)]
    with RawBagReader(tmp_path / "out") as bag:
        lab = [landmarks_from_msg(m) for _, _, m in bag.messages(topics.GT_LANDMARKS)]
    assert len(lab) == len(truth) == 3
    errors = [
        np.mean(np.linalg.norm(xy[17:] - gt[17:], axis=1)) / inter_ocular(gt, REP155_70)
        for (xy, c), gt in zip(lab, truth, strict=True)
        if c.any()
    ]
    assert errors and max(errors) < 0.12  # inner points (brows, eyes, nose, mouth, pupils)


def test_worker_imports_nothing_of_this_project() -> None:
    text = Path(worker.__file__).read_text()
    imports = [ln.split()[1] for ln in text.splitlines() if ln.startswith(("import ", "from "))]
    assert set(imports) <= {"__future__", "json", "os", "struct", "sys", "numpy"}
    assert struct.calcsize("<4sIfI") == worker.REPLY.size


def test_force_never_replaces_the_input_its_folder_or_a_non_bag(tmp_path: Path) -> None:
    from training.label.labeler import _check_paths

    src = make_bag(tmp_path / "recordings" / "rec_a")
    with pytest.raises(LabelError, match="contains it"):
        _check_paths(src, tmp_path / "recordings", force=True)
    with pytest.raises(LabelError, match="contains it"):
        _check_paths(src, tmp_path, force=True)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(LabelError, match="not a bag"):
        _check_paths(src, other, force=True)
    old = make_bag(tmp_path / "old_output")
    _check_paths(src, old, force=True)  # an old output bag may be replaced
    assert (other / "keep.txt").read_text() == "mine"


def test_labels_a_compressed_image_topic(compressed_synth_bag: Path, tmp_path: Path) -> None:
    """JPEG/PNG frames (``image_raw/compressed``) are labelled like raw ones."""
    with BagReader(compressed_synth_bag) as bag:
        n = bag.topics[topics.IMAGE + "/compressed"].count
    teacher = _ListTeacher([(None, 0.0)] * (2 * n))  # no face anywhere: every frame marked
    options = LabelOptions(force=True)  # the default topic: its /compressed sibling is taken
    stats = label_bag(compressed_synth_bag, tmp_path / "out", teacher, options)
    assert stats.images == n > 0 and stats.bad_images == 0 and stats.no_face == n
    with BagReader(tmp_path / "out") as out:
        assert out.topics[topics.GT_LANDMARKS].count == n  # one (marked) label per frame
