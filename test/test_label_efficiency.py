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
    ])  # fmt: skip
    assert rc == 0
    trains = [c for c in cmds if "train" in c]
    assert len(trains) == 2 and not [c for c in cmds if "pretrain" in c]  # encoders reused
    for c in trains:
        assert "data.options.use_rgb=false" in c and "schedule.steps=7" in c
        assert "data.options.label_fraction=0.1" in c
    assert str(enc_dir / "ssmer_all3" / "encoder.safetensors") in trains[1]
    assert "--init-event-encoder" not in trains[0]
    assert "optim.lr_scales.event_backbone=0.1" in trains[1]
    assert not any("lr_scales" in c for c in trains[0])  # scratch keeps one LR
    assert "cmfa_10pct_all3_lr0.1" in " ".join(trains[1])
    rows = json.loads((tmp_path / "exp" / "results.json").read_text())["rows"]
    assert [r["init"] for r in rows] == ["scratch", "all3_lr0.1"]


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        le.main(["--out", str(tmp_path), "--only", "10:nope"])
    with pytest.raises(SystemExit):
        le.main(["--out", str(tmp_path), "--only", "ten"])
    with pytest.raises(FileNotFoundError, match="--encoders"):
        le.main(["--out", str(tmp_path), "--encoders", str(tmp_path / "none"), "--only", "10:all3"])
