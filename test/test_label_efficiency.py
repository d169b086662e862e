"""``python -m training.experiments.label_efficiency``: options and the commands it runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.experiments import label_efficiency as le


def test_only_and_event_only_build_the_right_commands(tmp_path: Path, monkeypatch) -> None:
    enc_dir = tmp_path / "earlier"
    (enc_dir / "ssmer_all3").mkdir(parents=True)
    (enc_dir / "ssmer_all3" / "encoder.safetensors").write_bytes(b"x")
    (enc_dir / "ssmer_all3" / "log.jsonl").write_text(json.dumps({"windows_per_s": 10.0}) + "\n")
    cmds: list[list[str]] = []

    def fake_run(cmd: list[str], log: Path, threads: int) -> None:
        cmds.append(cmd)
        if "train" in cmd:
            out = Path(next(c for c in cmd if c.startswith("run.out_dir=")).split("=", 1)[1])
            (out / "model.safetensors").write_bytes(b"m")
        elif "eval" in cmd:
            out = Path(cmd[cmd.index("--out") + 1])
            out.mkdir(parents=True)
            by = {m: {"nme": 0.2, "fr10": 0.5} for m in ("fused", "event")}
            (out / "eval.json").write_text(json.dumps({"by_mode": by, "num_samples": 3}))

    monkeypatch.setattr(le, "_run", fake_run)
    rc = le.main([
        "--out", str(tmp_path / "exp"), "--encoders", str(enc_dir), "--event-only",
        "--only", "10:scratch,10:all3", "--finetune-steps", "7", "--encoder-lr-scale", "0.1",
        "--encoder-freeze-steps", "3",
    ])  # fmt: skip
    assert rc == 0
    trains = [c for c in cmds if "train" in c]
    assert len(trains) == 2 and not [c for c in cmds if "pretrain" in c]  # encoders reused
    for c in trains:
        assert "data.options.use_rgb=false" in c and "schedule.steps=7" in c
        assert "data.options.label_fraction=0.1" in c
    pre, scratch = trains  # the pretrained encoder's run is started first
    assert str(enc_dir / "ssmer_all3" / "encoder.safetensors") in pre
    assert "--init-event-encoder" not in scratch
    assert "optim.lr_scales.event_backbone=0.1" in pre
    assert not any("lr_scales" in c for c in scratch)  # scratch keeps one LR
    assert "optim.freeze_steps.event_backbone=3" in pre
    assert not any("freeze_steps" in c for c in scratch)  # nothing to hold in scratch
    assert "cmfa_10pct_all3_lr0.1_frz3_event" in " ".join(pre)
    rows = json.loads((tmp_path / "exp" / "results.json").read_text())["rows"]
    assert [r["init"] for r in rows] == ["all3_lr0.1_frz3", "scratch"]
    assert {r["finetune"] for r in rows} == {"event"}


def test_seeds_and_modes_share_one_pretraining(tmp_path: Path, monkeypatch) -> None:
    cmds: list[list[str]] = []
    nme = {"scratch": 0.4, "all3": 0.3}

    def fake_run(cmd: list[str], log: Path, threads: int) -> None:
        cmds.append(cmd)
        out = Path(next((c for c in cmd if c.startswith("run.out_dir=")), "=").split("=", 1)[1])
        if "pretrain" in cmd:
            (out / "encoder.safetensors").write_bytes(b"e")
            (out / "log.jsonl").write_text(json.dumps({"windows_per_s": 100.0}) + "\n")
        elif "train" in cmd:
            (out / "model.safetensors").write_bytes(b"m")
        else:  # eval
            out = Path(cmd[cmd.index("--out") + 1])
            out.mkdir(parents=True)
            init = "all3" if "all3" in out.parent.name else "scratch"
            by = {m: {"nme": nme[init], "fr10": 0.5} for m in ("fused", "event")}
            (out / "eval.json").write_text(json.dumps({"by_mode": by, "num_samples": 3}))

    monkeypatch.setattr(le, "_run", fake_run)
    rc = le.main([
        "--out", str(tmp_path / "exp"), "--only", "10:scratch,10:all3", "--seeds", "0,1",
        "--modes", "fused,event", "--jobs", "3", "--workers", "3", "--pretrain-workers", "5",
    ])  # fmt: skip
    assert rc == 0
    pretrains = [c for c in cmds if "pretrain" in c]
    assert len(pretrains) == 1 and "data.num_workers=5" in pretrains[0]
    trains = [c for c in cmds if "train" in c]
    assert len(trains) == 8 and all("data.num_workers=3" in c for c in trains)
    names = {Path(next(x for x in c if x.startswith("run.out_dir="))).name for c in trains}
    assert names == {
        "cmfa_10pct_scratch", "cmfa_10pct_all3", "cmfa_10pct_scratch_event",
        "cmfa_10pct_all3_event", "cmfa_10pct_scratch_s1", "cmfa_10pct_all3_s1",
        "cmfa_10pct_scratch_event_s1", "cmfa_10pct_all3_event_s1",
    }  # fmt: skip
    result = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert result["pretrain_windows_per_s"] == {"all3": 100.0}
    md = (tmp_path / "exp" / "results.md").read_text()
    assert "| 10% | event | all3 | 2 | 0.3000 | 0.3000 | 0.750 | 0.750 |" in md


def test_bad_options_are_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        le.main(["--out", str(tmp_path), "--only", "10:nope"])
    with pytest.raises(SystemExit):
        le.main(["--out", str(tmp_path), "--only", "ten"])
    for bad in (["--seeds", "0,x"], ["--modes", "fused,rgb"], ["--modes", "event", "--event-only"],
                ["--workers", "-1"], ["--pretrain-workers", "-2"],
                ["--encoder-freeze-steps", "-1"],
                ["--encoder-freeze-steps", "600", "--finetune-steps", "600"]):  # fmt: skip
        with pytest.raises(SystemExit):
            le.main(["--out", str(tmp_path), *bad])
    assert le.main(["--out", str(tmp_path), "--encoders", str(tmp_path / "none"),
                    "--only", "10:all3"]) == 2  # fmt: skip
    assert "--encoders" in capsys.readouterr().err


def test_a_failed_run_is_one_line_and_relative_paths_are_the_callers(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    cmds: list[list[str]] = []

    def failing_run(cmd: list[str], log: Path, threads: int) -> None:
        cmds.append(cmd)
        raise RuntimeError(f"failed (2): {' '.join(cmd[:3])}; see {log}")

    monkeypatch.setattr(le, "_run", failing_run)
    monkeypatch.chdir(tmp_path)  # not the repository: relative paths are the caller's
    rc = le.main(
        ["--out", "exp", "--train", "lab/train_*", "--test", "t/*", "--only", "10:scratch"]
    )
    assert rc == 2 and "failed (2)" in capsys.readouterr().err
    (cmd,) = cmds
    assert f"data.options.paths.train=['{tmp_path / 'lab' / 'train_*'}']" in cmd
    assert any(c == f"run.out_dir={tmp_path / 'exp' / 'cmfa_10pct_scratch'}" for c in cmd)


def test_all3det_pretrains_on_detector_boxes(tmp_path: Path, monkeypatch) -> None:
    cmds: list[list[str]] = []

    def fake_run(cmd: list[str], log: Path, threads: int) -> None:
        cmds.append(cmd)
        out = Path(next((c for c in cmd if c.startswith("run.out_dir=")), "=").split("=", 1)[1])
        if "pretrain" in cmd:
            (out / "encoder.safetensors").write_bytes(b"e")
        elif "train" in cmd:
            (out / "model.safetensors").write_bytes(b"m")
        else:  # eval
            out = Path(cmd[cmd.index("--out") + 1])
            out.mkdir(parents=True)
            by = {m: {"nme": 0.3, "fr10": 0.5} for m in ("fused", "event")}
            (out / "eval.json").write_text(json.dumps({"by_mode": by, "num_samples": 3}))

    monkeypatch.setattr(le, "_run", fake_run)
    rc = le.main(["--out", str(tmp_path / "exp"), "--only", "10:all3,10:all3det"])
    assert rc == 0
    pre = {Path(next(x for x in c if x.startswith("run.out_dir="))).name: c for c in cmds
           if "pretrain" in c}  # fmt: skip
    assert set(pre) == {"ssmer_all3", "ssmer_all3det"}
    assert "data.box_source=detector" in pre["ssmer_all3det"]
    assert not any("box_source" in x for x in pre["ssmer_all3"])
    views = "data.views=[event_frame,time_surface,voxel]"
    assert views in pre["ssmer_all3"] and views in pre["ssmer_all3det"]


def test_pretrain_extra_feeds_pretraining_only(tmp_path: Path, monkeypatch) -> None:
    cmds: list[list[str]] = []

    def fake_run(cmd: list[str], log: Path, threads: int) -> None:
        cmds.append(cmd)
        out = Path(next(c for c in cmd if c.startswith("run.out_dir=")).split("=", 1)[1])
        name = "encoder.safetensors" if "pretrain" in cmd else "model.safetensors"
        (out / name).write_bytes(b"x")

    monkeypatch.setattr(le, "_run", fake_run)
    rc = le.main(["--out", str(tmp_path / "exp"), "--train", "lab/train_*", "--only",
                  "10:scratch,10:all3det", "--pretrain-extra", "more/train_*",
                  "--pretrain-extra", "rig/*.mcap", "--no-eval"])  # fmt: skip
    assert rc == 0
    (pre,) = [c for c in cmds if "pretrain" in c]
    bags = pre[pre.index("--bags") + 1 : pre.index("--config")]
    assert bags == ["lab/train_*", "more/train_*", "rig/*.mcap"]
    trains = [c for c in cmds if "train" in c]
    assert len(trains) == 2
    for c in trains:  # the labelled subset is still drawn from --train alone
        assert "data.options.paths.train=['lab/train_*']" in c
        assert not any("more/" in x or "rig/" in x for x in c)
    with pytest.raises(SystemExit):  # nothing would pretrain
        le.main(["--out", str(tmp_path / "y"), "--encoders", str(tmp_path), "--only",
                 "10:all3det", "--pretrain-extra", "more/train_*"])  # fmt: skip
    cmds.clear()  # several --train globs: one labelled pool, all of it pretrained on
    rc = le.main(["--out", str(tmp_path / "z"), "--train", "lab/train_*", "more/train_*",
                  "--only", "10:scratch,10:all3det", "--no-eval"])  # fmt: skip
    assert rc == 0
    (pre,) = [c for c in cmds if "pretrain" in c]
    assert pre[pre.index("--bags") + 1 : pre.index("--config")] == ["lab/train_*", "more/train_*"]
    for c in [c for c in cmds if "train" in c]:
        assert "data.options.paths.train=['lab/train_*', 'more/train_*']" in c


def test_labelled_jobs_name_the_recordings_training_would_label(tmp_path: Path) -> None:
    from training.data import expand_paths, labelled_subset
    from training.experiments.labelled_set import TRAIN_SET, labelled_jobs
    from training.synth.make_set import plan

    small = (("a", 0, 7, 6.0), ("b", 7, 13, 2.0))
    for folder, first, count, _ in small:
        for name, *_ in plan("train", count, first):
            (tmp_path / folder / name).mkdir(parents=True)
    every = expand_paths([str(tmp_path / "*" / "train_*")])
    want = labelled_subset(every, 0.3, 5)
    jobs = labelled_jobs(0.3, tmp_path, 5, small)
    got = [out / plan("train", 1, first)[0][0] for out, first, _ in jobs]
    assert got == want and len(got) == 6
    assert {s for out, _, s in jobs if out.name == "a"} == {6.0}
    assert {s for out, _, s in jobs if out.name == "b"} == {2.0}
    assert len(labelled_jobs(0.1)) == 28 and sum(c for *_, c, _ in TRAIN_SET) == 276
    with pytest.raises(ValueError, match="label_fraction"):
        labelled_jobs(0.0)


def test_train_is_labelled_uses_every_given_recording_and_no_eval_skips_eval(
    tmp_path: Path, monkeypatch
) -> None:
    cmds: list[list[str]] = []

    def fake_run(cmd: list[str], log: Path, threads: int) -> None:
        cmds.append(cmd)
        out = Path(next(c for c in cmd if c.startswith("run.out_dir=")).split("=", 1)[1])
        (out / "model.safetensors").write_bytes(b"m")

    monkeypatch.setattr(le, "_run", fake_run)
    rc = le.main(["--out", str(tmp_path / "exp"), "--only", "10:scratch", "--seeds", "0,1",
                  "--train-is-labelled", "--no-eval"])  # fmt: skip
    assert rc == 0 and len(cmds) == 2 and all("train" in c for c in cmds)
    assert all("data.options.label_fraction=1.0" in c for c in cmds)
    names = {Path(next(x for x in c if x.startswith("run.out_dir="))).name for c in cmds}
    assert names == {"cmfa_10pct_scratch", "cmfa_10pct_scratch_s1"}  # named by the fraction
    assert not (tmp_path / "exp" / "results.json").exists()  # --no-eval writes no results
    for bad in ([], ["--only", "10:scratch,100:scratch"], ["--only", "10:scratch,10:all3"]):
        with pytest.raises(SystemExit):  # the last: an encoder would pretrain on 10 % alone
            le.main(["--out", str(tmp_path / "x"), "--train-is-labelled", *bad])
    assert not (tmp_path / "x").exists()


def test_gpu_finetune_script_refuses_bad_settings_before_any_work(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    script = Path(le.ROOT) / "training" / "experiments" / "label_efficiency_gpu_finetune.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0

    def run(**env: str) -> subprocess.CompletedProcess:
        full = {**os.environ, "PYTHON": sys.executable, **env}
        cmd = ["bash", str(script), str(tmp_path / "w"), str(tmp_path / "o")]
        return subprocess.run(cmd, env=full, cwd=le.ROOT, capture_output=True, text=True)

    env = {k: v for k, v in os.environ.items() if k != "ENCODERS"}
    r = subprocess.run(["bash", str(script), "w", "o"], env=env, cwd=tmp_path,
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode != 0 and "ENCODERS" in r.stderr
    r = run(ENCODERS=str(tmp_path), FRACTION="0.125")
    assert r.returncode == 1 and "whole percentage" in r.stdout
    r = run(ENCODERS=str(tmp_path))  # no ssmer_all3det/encoder.safetensors there
    assert r.returncode == 1 and "ssmer_all3det/encoder.safetensors" in r.stdout
    assert not (tmp_path / "w" / "data").exists()  # stopped before making any recording
