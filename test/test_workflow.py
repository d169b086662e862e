"""The own-rig workflow of docs/WORKFLOW.md, end to end on a small generated bag.

record (a synthetic bag stands in) -> label (a stand-in teacher speaking the worker protocol) ->
pretrain (SSMER) -> fine-tune from the shipped weights with the pretrained encoder -> eval ->
replay with the new checkpoint. Every step is the real ``facealign`` command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from facealign_ros.cli import main

ROOT = Path(__file__).resolve().parents[1]

# A teacher that puts the projected mean face at the image centre for every frame (and its
# mirror image for the mirrored pass), over the protocol of training/label/worker.py.
STAND_IN_TEACHER = """
import sys
import numpy as np
from facealign_ros.face.pose import default_intrinsics, mean_face_68
from training.label import worker as w
from facealign_ros.face.landmarks import REP155_70, flip_landmarks
from training.label.mapping import MESH_POINTS, MESH_TO_REP155

out = sys.stdout.buffer
info = b'{"teacher": "stand-in"}'
out.write(w.HELLO + len(info).to_bytes(4, "little") + info)
out.flush()
n = 0
while (head := w.read_exact(sys.stdin.buffer, w.REQUEST.size)) is not None:
    _, h, wd = w.REQUEST.unpack(head)
    img = w.read_exact(sys.stdin.buffer, h * wd * 3)
    K = default_intrinsics(wd, h)
    p = mean_face_68() + [0.0, 0.0, 0.5]
    uv = (p @ K.T)[:, :2] / (p @ K.T)[:, 2:]
    pts = np.concatenate([uv, [uv[36:42].mean(0), uv[42:48].mean(0)]])
    if n % 2:  # requests come in pairs: a frame, then its mirror image
        pts = flip_landmarks(pts, wd, REP155_70)
    n += 1
    mesh = np.zeros((MESH_POINTS, 3), np.float32)
    mesh[:, :2] = pts.mean(0)
    for i, verts in enumerate(MESH_TO_REP155):
        mesh[list(verts), :2] = pts[i]
    mesh[:, 0] = (mesh[:, 0] + 0.5) / wd
    mesh[:, 1] = (mesh[:, 1] + 0.5) / h
    w.write_reply(out, w.FACE, 0.9, mesh.astype("<f4").tobytes())
"""


def test_record_label_pretrain_finetune_eval_replay(
    synth_bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    teacher = tmp_path / "stand_in_teacher.py"
    teacher.write_text(STAND_IN_TEACHER, encoding="utf-8")
    labelled = tmp_path / "labelled"
    label = ["label", str(synth_bag), "-o", str(labelled), "--force", "--min-score", "0.2"]
    teacher_args = ["--teacher-python", sys.executable, "--teacher-worker", str(teacher)]
    assert main([*label, *teacher_args, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["labelled"] == 12 and stats["marked"] == 0, stats

    ssmer = tmp_path / "ssmer"
    pre = ["pretrain", "--bags", str(labelled), "--config", "training/configs/ssmer_lite.yaml"]
    tiny = ["data.batch_size=2", "data.num_workers=0", "data.stride_ms=5", "data.shuffle_buffer=2"]
    quiet = ["run.progress=false", "run.tensorboard=false", "run.device=cpu"]
    assert main([*pre, *tiny, *quiet, "schedule.steps=2", f"run.out_dir={ssmer}"]) == 0
    encoder = ssmer / "encoder.safetensors"

    mine = tmp_path / "mine"
    paths = [f"data.options.paths.{s}=['{labelled}']" for s in ("train", "val")]
    train = ["train", "--config", "training/configs/lite.yaml", *paths, "--init-from", "shipped"]
    train += ["--init-event-encoder", str(encoder), "schedule.steps=2", "data.batch_size=2"]
    train += ["data.num_workers=0", "data.val_limit=4", "schedule.warmup_steps=1", *quiet]
    assert main([*train, f"run.out_dir={mine}"]) == 0
    model = mine / "model.safetensors"
    assert model.is_file()
    from facealign_ros.model.checkpoint import lineage_of, read_metadata
    from facealign_ros.pipeline.config import default_model_path

    # The recipe stays whole: the shipped weights' own command is recorded as the parent.
    assert read_metadata(model).lineage == lineage_of(default_model_path())

    assert main(["eval", "--model", str(model), str(labelled), "--json", "--limit", "6"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["num_samples"] == 6 and report["by_mode"]["fused"]["nme"] > 0
    by_rec = report["by_recording"]
    assert list(by_rec) == [labelled.name] and by_rec[labelled.name]["count"] == 6
    assert by_rec[labelled.name]["fused"]["nme"] == report["nme"]

    out = tmp_path / "replayed"
    replay = ["replay", str(labelled), "-o", str(out), "--model", str(model), "--json"]
    assert main([*replay, "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["results"] > 0 and summary["metrics"] is not None, summary
