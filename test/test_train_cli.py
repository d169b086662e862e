"""``facealign train`` glue: add_train_parser + run_train on the smoke config."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from facealign_ros.model.checkpoint import read_metadata
from training.train import add_train_parser, command_line, run_train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMOKE = Path(__file__).resolve().parents[1] / "training" / "configs" / "smoke.yaml"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="facealign")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_run_train_smoke(tmp_path: Path) -> None:
    args = _parse(
        [
            "train",
            "--config",
            str(SMOKE),
            "--device",
            "cpu",
            "--out-dir",
            str(tmp_path),
            "--no-progress",
            "schedule.steps=3",
            "data.options.num_samples=16",
            "data.options.eval_samples=8",
            "run.checkpoint_every=2",
        ]
    )
    assert args.command == "train" and args.overrides[0] == "schedule.steps=3"
    args.command_line = "facealign train --config smoke.yaml"
    assert run_train(args) == 0
    meta = read_metadata(tmp_path / "model.safetensors")
    assert meta.training_command == "facealign train --config smoke.yaml"
    assert set(meta.metrics) >= {"val_nme", "val_fr10", "val_auc10", "val_nme_event", "val_nme_rgb"}
    assert meta.preprocessing["toy"]["size"] == 64
    assert (tmp_path / "checkpoints" / "step_0000003" / "state.safetensors").is_file()


def test_run_train_reports_bad_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    args = _parse(["train", "--config", str(SMOKE), "--out-dir", str(tmp_path), "optim.lrr=1"])
    with caplog.at_level(logging.ERROR):
        assert run_train(args) == 2
    assert "optim.lrr" in caplog.text
    assert not (tmp_path / "model.safetensors").exists()


def test_a_diverging_run_stops_with_exit_2_before_the_update(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # lr 1e6: the first update makes the weights blow up, the second step's loss is NaN; before,
    # the CPU backward of grid_sample on NaN points killed the process (SIGSEGV)
    args = _parse(["train", "--config", str(SMOKE), "--device", "cpu", "--out-dir",
                   str(tmp_path), "--no-progress", "schedule.steps=6", "schedule.warmup_steps=0",
                   "optim.lr=1e6", "optim.grad_clip=0", "data.options.num_samples=16",
                   "run.checkpoint_every=100"])  # fmt: skip
    with caplog.at_level(logging.ERROR):
        assert run_train(args) == 2
    assert "the run diverged" in caplog.text and "lower optim.lr" in caplog.text
    assert not (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize(
    "bad", ["optim.lr=.inf", "optim.weight_decay=.nan", "loss.conf_weight=.inf", "run.out_dir="]
)
def test_non_finite_settings_and_an_empty_out_dir_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.chdir(tmp_path)  # an empty out_dir is the working directory
    args = _parse(["train", "--config", str(SMOKE), bad])
    with caplog.at_level(logging.ERROR):
        assert run_train(args) == 2
    assert bad.split("=")[0] in caplog.text
    assert not list(tmp_path.iterdir())  # nothing written anywhere


def test_an_out_dir_that_is_a_file_or_a_foreign_resume_is_one_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    foreign = tmp_path / "foreign.safetensors"  # not a training checkpoint
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(foreign), metadata={"format": "facealign_ros.ssmer"})
    for extra in ([f"run.out_dir={afile}"], ["--out-dir", str(tmp_path / "r"),
                                            f"run.resume={foreign}"]):  # fmt: skip
        args = _parse(["train", "--config", str(SMOKE), *extra])
        with caplog.at_level(logging.ERROR):
            assert run_train(args) == 2
    assert afile.read_text() == "mine"


def test_command_line_records_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["/venv/bin/facealign", "train", "--config", "a b.yaml", "optim.lr=3e-4"]
    assert command_line(argv) == "facealign train --config 'a b.yaml' optim.lr=3e-4"
    py = ["/src/training/train.py", "--config", "c.yaml"]
    assert command_line(py) == "python -m training.train --config c.yaml"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert command_line(argv).startswith("torchrun --nproc_per_node=2 facealign train")
    assert command_line(py) == "torchrun --nproc_per_node=2 -m training.train --config c.yaml"


def test_overrides_may_follow_options() -> None:
    from facealign_ros.cli import build_parser, parse_args

    argv = ["train", "--config", "x.yaml", "a.b=1", "--init-from", "shipped", "c.d=2"]
    args = parse_args(build_parser(), argv)
    assert args.overrides == ["a.b=1", "c.d=2"] and args.init_from == "shipped"
    args = parse_args(build_parser(), ["pretrain", "--bags", "b1", "--config", "y", "e.f=3"])
    assert args.overrides == ["e.f=3"] and args.bags == ["b1"]
    with pytest.raises(SystemExit):
        parse_args(build_parser(), ["train", "--config", "x", "a.b=1", "--device", "cpu", "junk"])
    with pytest.raises(SystemExit):
        parse_args(
            build_parser(), ["eval", "--model", "m", "--limit", "2", "a.b=1", "--json", "c.d=1"]
        )
