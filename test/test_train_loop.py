"""Training loop: one step lowers the loss, a tiny run lowers NME, kill + resume is exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from facealign_ros.face.landmarks import IBUG68
from facealign_ros.model.checkpoint import load_checkpoint, read_metadata
from facealign_ros.model.loss import cmfa_loss, normalized_error
from training.evaluate import evaluate
from training.trainer import build
from training.trainer.config import TrainConfig, load_config
from training.trainer.loop import Trainer
from training.trainer.state import STATE_FILE, latest_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMOKE = Path(__file__).resolve().parents[1] / "training" / "configs" / "smoke.yaml"


def _cfg(out: Path, *extra: str) -> TrainConfig:
    base = [
        f"run.out_dir={out}",
        "run.progress=false",
        "run.tensorboard=false",
        "run.log_every=1",
        "data.options.size=64",
        "data.options.num_samples=16",
        "data.options.eval_samples=8",
        "data.batch_size=8",
        "data.val_split=",
    ]
    return load_config(SMOKE, [*base, *extra])


def _batch_loss(model: torch.nn.Module, batch: dict) -> float:
    torch.manual_seed(0)
    ones = torch.ones(len(batch["events"]), dtype=torch.bool)
    with torch.no_grad():
        out = model(batch["rgb"], batch["events"], rgb_present=ones, event_present=ones)
        cfg = model.config
        return float(cmfa_loss(out, batch["landmarks"], cfg.stage_weights, (36, 45)).total)


def test_one_step_reduces_loss_on_a_fixed_batch(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        "data.options.num_samples=8",
        "schedule.steps=1",
        "schedule.warmup_steps=0",
        "optim.lr=1e-4",
        "loss.p_warm=0",
        "model.overrides.p_drop_rgb=0",
        "model.overrides.p_drop_event=0",
    )
    ds = build.make_dataset(cfg.data, "train", cfg.run.seed)
    batch = torch.utils.data.default_collate([ds[i] for i in range(8)])
    net = cfg.model.network(**build.data_fields(ds[0]))
    before = build.build_model(net, build.dataset_mean_shape(ds, 256), cfg.run.seed).train()
    result = Trainer(cfg).fit()
    after, _ = load_checkpoint(result.model_path)
    loss0, loss1 = _batch_loss(before, batch), _batch_loss(after.train(), batch)
    assert loss1 < loss0


def _nme_batch_stats(model: torch.nn.Module, ds: torch.utils.data.Dataset) -> float:
    """Fused NME on the whole (tiny) set in one batch, BatchNorm on batch statistics.

    BatchNorm running statistics move slowly (momentum 0.01), so a few dozen steps say more
    about the weights in training mode than in eval mode.
    """
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    ones = torch.ones(len(ds), dtype=torch.bool)
    with torch.no_grad():
        out = model.train()(batch["rgb"], batch["events"], rgb_present=ones, event_present=ones)
    return float(normalized_error(out["landmarks"], batch["landmarks"], (36, 45)).mean())


def test_tiny_run_reduces_nme(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "schedule.steps=40", "schedule.warmup_steps=2", "loss.p_warm=0")
    ds = build.make_dataset(cfg.data, "train", cfg.run.seed)
    net = cfg.model.network(**build.data_fields(ds[0]))
    start = build.build_model(net, build.dataset_mean_shape(ds, 256), cfg.run.seed)
    nme0 = _nme_batch_stats(start, ds)
    result = Trainer(cfg).fit()
    model, meta = load_checkpoint(result.model_path)
    nme1 = _nme_batch_stats(model, ds)
    assert nme1 < 0.85 * nme0, (nme0, nme1)
    assert meta.landmark_scheme == "ibug68" and meta.representations == ("toy_blobs",)
    assert result.history[-1]["samples_per_s"] > 0
    report = evaluate(model, ds, IBUG68, modes=("fused",)).report  # eval mode runs too
    assert report["num_samples"] == len(ds) and np.isfinite(report["nme"])


class _KilledError(Exception):
    pass


@pytest.mark.parametrize("freeze", [(), ("optim.freeze_steps.event_backbone=5",)])
def test_kill_and_resume_is_bit_identical(tmp_path: Path, freeze: tuple[str, ...]) -> None:
    extra = (
        *freeze,  # a frozen warm-up released at step 5: the kill and resume straddle it
        "schedule.steps=7",
        "schedule.warmup_steps=2",
        "data.options.num_samples=12",
        "data.batch_size=4",  # 3 batches per epoch: the kill and the resume are mid-epoch
        "run.checkpoint_every=2",
        "loss.p_warm=0.5",
        "model.overrides.dropout=0.1",
        "run.tensorboard=true",
    )
    full = Trainer(_cfg(tmp_path / "a", *extra), command="facealign train a").fit()

    def kill_at_5(step: int, scalars: object) -> None:
        if step == 5:
            raise _KilledError

    with pytest.raises(_KilledError):
        Trainer(_cfg(tmp_path / "b", *extra), on_step=kill_at_5).fit()
    ckpt = latest_checkpoint(tmp_path / "b" / "checkpoints")
    assert ckpt is not None and ckpt.name == "step_0000004"
    resumed = Trainer(_cfg(tmp_path / "b", *extra), command="facealign train b").fit()
    assert resumed.step == full.step == 7
    a = load_file(str(full.model_path))
    b = load_file(str(resumed.model_path))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.weights_digest == full.weights_digest
    losses = [h["loss"] for h in full.history]
    assert [h["loss"] for h in resumed.history] == losses[4:]
    # the checkpoint is safetensors + JSON only, and records the command
    with safe_open(str(ckpt / STATE_FILE), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
    assert meta["step"] == 4 and meta["sampler"] == {
        "epoch": 1,
        "batch": 1,
        "world_size": 1,
        "batch_size": 4,
    }
    assert read_metadata(resumed.model_path).training_command == "facealign train b"
    assert (tmp_path / "b" / "config.yaml").is_file()
    assert list((tmp_path / "a" / "tb").glob("events.out.tfevents.*"))
    kept = sorted(p.name for p in (tmp_path / "a" / "checkpoints").glob("step_*"))
    assert kept == ["step_0000004", "step_0000006", "step_0000007"]


def test_frozen_warm_up_holds_the_encoder_then_releases_it(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        "schedule.steps=4",
        "schedule.warmup_steps=1",
        "run.checkpoint_every=1",
        "run.keep_checkpoints=4",
        "loss.p_warm=0",
        "optim.freeze_steps.event_backbone=2",
    )
    result = Trainer(cfg).fit()
    ckpts = tmp_path / "checkpoints"
    w = {s: load_file(str(ckpts / f"step_{s:07d}" / "model.safetensors")) for s in (1, 2, 3)}
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    weights = [k for k in w[1] if not k.endswith(buffers)]
    held = [k for k in weights if k.startswith("event_backbone.")]
    rest = [k for k in weights if not k.startswith("event_backbone.")]
    assert held and rest
    assert all(torch.equal(w[2][k], w[1][k]) for k in held)  # steps 0 and 1: frozen
    assert any(not torch.equal(w[2][k], w[1][k]) for k in rest)  # the rest trains meanwhile
    assert any(not torch.equal(w[3][k], w[2][k]) for k in held)  # released at step 2
    assert all(h["lr"] > 0 for h in result.history)  # the logged LR is an unfrozen group's


def test_resume_rejects_a_different_network(tmp_path: Path) -> None:
    Trainer(_cfg(tmp_path, "schedule.steps=1")).fit()
    cfg = _cfg(tmp_path, "schedule.steps=2", "model.overrides.d_model=64")
    with pytest.raises(Exception, match="network config differs"):
        Trainer(cfg).fit()
    assert np.isfinite(Trainer(_cfg(tmp_path, "schedule.steps=2")).fit().step)
    # the optimizer state would bring the old LR back while config.yaml recorded the new one
    for changed in ("optim.lr=1e-7", "optim.weight_decay=0.5"):
        with pytest.raises(Exception, match=f"trained with optim {changed.split('.')[1][:2]}"):
            Trainer(_cfg(tmp_path, "schedule.steps=3", changed)).fit()
    assert Trainer(_cfg(tmp_path, "schedule.steps=3", "optim.grad_clip=0.5")).fit().step == 3


def test_warm_start_of_a_negative_crop_is_a_face_shape_not_its_placeholder() -> None:
    gt = torch.zeros(3, 4, 2)
    gt[0] = torch.tensor([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.5, 0.8]])
    mean = torch.tensor([[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.5, 0.75]])
    noise = torch.full((3, 4, 2), 0.01)
    face = torch.tensor([True, False, False])
    out = build.warm_init(gt, face, mean, noise)
    torch.testing.assert_close(out[0], gt[0] + 0.01)  # a face: its ground truth + noise
    torch.testing.assert_close(out[1:], (mean + 0.01).expand(2, 4, 2))  # negatives: mean shape
    # no face flags: every sample starts at its ground truth (clamped to the crop)
    torch.testing.assert_close(build.warm_init(gt, None, mean, -noise), (gt - 0.01).clamp(0, 1))
