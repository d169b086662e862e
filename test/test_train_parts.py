"""Training building blocks: toy data contract, sampler, schedule, masks, state round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from facealign_ros.face.landmarks import IBUG68, REP155_70, flip_normalized
from facealign_ros.model.config import lite_config
from training.trainer import build
from training.trainer.config import ScheduleSection
from training.trainer.sampler import EpochSampler, derive_seed
from training.trainer.state import (
    optimizer_from_flat,
    optimizer_to_flat,
    rng_state,
    set_rng_state,
)
from training.trainer.toy import ToyConfig, ToyFaces, toy_pose_from_landmarks, toy_template_3d

CONTRACT = {
    "events": (np.float32, (3, 32, 32)),
    "rgb": (np.float32, (3, 32, 32)),
    "landmarks": (np.float32, (68, 2)),
    "visible": (np.float32, (68,)),
    "pose_deg": (np.float32, (3,)),
    "A": (np.float64, (2, 3)),
}


def _toy(split: str = "train", **kw: object) -> ToyFaces:
    return ToyFaces(ToyConfig(num_samples=12, eval_samples=6, size=32, **kw), split, seed=3)


def test_toy_sample_contract() -> None:
    item = _toy()[5]
    for key, (dtype, shape) in CONTRACT.items():
        assert item[key].dtype == dtype and item[key].shape == shape, key
    assert isinstance(item["rgb_present"], bool) and isinstance(item["event_present"], bool)
    assert item["light"] in (0, 1, 2) and item["motion"] in (0, 1)
    assert item["stamp_ns"].dtype == np.int64
    assert item["rgb"].min() >= 0.0 and item["rgb"].max() <= 1.0
    assert np.all((item["landmarks"] > 0) & (item["landmarks"] < 1))


def test_toy_is_deterministic_and_epoch_only_changes_noise() -> None:
    a, b = _toy(), _toy()
    x, y = a[4], b[4]
    assert all(np.array_equal(x[k], y[k]) for k in CONTRACT)
    b.set_epoch(1)
    z = b[4]
    assert np.array_equal(x["landmarks"], z["landmarks"])
    assert not np.array_equal(x["rgb"], z["rgb"])
    val = _toy("val")
    val.set_epoch(5)
    assert np.array_equal(val[2]["rgb"], _toy("val")[2]["rgb"])  # no augmentation off train
    assert not np.array_equal(val[2]["landmarks"], a[2]["landmarks"])  # disjoint splits


def test_toy_template_is_flip_consistent_and_pose_recoverable() -> None:
    for scheme in (IBUG68, REP155_70):
        pts = toy_template_3d(scheme.name)[:, :2] + 0.5
        np.testing.assert_allclose(flip_normalized(pts, scheme), pts, atol=1e-12)
    ds = _toy()
    lms = np.stack([ds[i]["landmarks"] for i in range(6)]) * 32 - 0.5
    gt = np.stack([ds[i]["pose_deg"] for i in range(6)])
    np.testing.assert_allclose(toy_pose_from_landmarks(lms, IBUG68), gt, atol=1e-3)


def test_toy_rejects_unknown_options() -> None:
    with pytest.raises(ValueError, match="unknown toy data options"):
        build.make_dataset({"kind": "toy", "sizes": 3}, "train", 0)


def test_sampler_shards_cover_and_resume() -> None:
    ranks = [EpochSampler(10, seed=1, batch_size=2, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(3)
    a, b = (s.indices() for s in ranks)
    assert len(a) == len(b) == 4 and ranks[0].batches_per_epoch == 2
    assert not set(a) & set(b)
    one = EpochSampler(10, seed=1, batch_size=3)
    one.set_epoch(2)
    full = one.indices()
    one.set_epoch(2, start_batch=2)
    assert np.array_equal(one.indices(), full[6:9]) and len(one) == 3
    one.set_epoch(3)
    assert not np.array_equal(one.indices(), full)
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3) != derive_seed(1, 2, 4)


def test_lr_schedule_warmup_then_cosine() -> None:
    sch = ScheduleSection(steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert build.lr_factor(0, sch) == pytest.approx(0.1)
    assert build.lr_factor(9, sch) == pytest.approx(1.0)
    assert build.lr_factor(10, sch) == pytest.approx(1.0)
    assert build.lr_factor(60, sch) == pytest.approx(0.55)
    assert build.lr_factor(110, sch) == pytest.approx(0.1)


def test_lr_scales_make_their_own_groups() -> None:
    from facealign_ros.model import CMFA, lite_config

    model = CMFA(lite_config(num_points=16))
    plain = build.param_groups(model, 0.05, 1e-3)
    assert [(g["lr"], g["weight_decay"]) for g in plain] == [(1e-3, 0.05), (1e-3, 0.0)]
    scaled = build.param_groups(
        model, 0.05, 1e-3, {"event_backbone": 0.1, "event_backbone.stem": 0.5}
    )
    lrs = {id(p): g["lr"] for g in scaled for p in g["params"]}
    for name, prm in model.named_parameters():
        want = 5e-4 if name.startswith("event_backbone.stem") else 1e-4
        assert lrs[id(prm)] == pytest.approx(want if name.startswith("event_backbone") else 1e-3)
    assert sum(len(g["params"]) for g in scaled) == sum(len(g["params"]) for g in plain)
    with pytest.raises(ValueError, match="no trainable parameter starts with"):
        build.param_groups(model, 0.05, 1e-3, {"encoder": 0.1})
    sched = torch.optim.lr_scheduler.LambdaLR(torch.optim.AdamW(scaled), lambda s: 0.5)
    assert sorted({g["lr"] for g in sched.optimizer.param_groups}) == pytest.approx(
        [5e-5, 2.5e-4, 5e-4]
    )


def test_freeze_steps_make_their_own_groups_and_hold_them() -> None:
    from facealign_ros.model import CMFA, lite_config

    model = CMFA(lite_config(num_points=16))
    groups = build.param_groups(
        model, 0.05, 1e-3, {"event_backbone": 0.1}, {"event_backbone": 30, "rgb_backbone": 0}
    )
    freeze = {id(p): (g["freeze_steps"], g["lr"]) for g in groups for p in g["params"]}
    for name, prm in model.named_parameters():
        enc = name.startswith("event_backbone")
        assert freeze[id(prm)][0] == (30 if enc else 0)
        assert freeze[id(prm)][1] == pytest.approx(1e-4 if enc else 1e-3)
    assert [g["freeze_steps"] for g in groups] == [0, 0, 30, 30]  # never-frozen groups first
    with pytest.raises(ValueError, match="freeze_steps: no trainable parameter starts with"):
        build.param_groups(model, 0.05, 1e-3, None, {"encoder": 10})
    sch = ScheduleSection(steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert build.frozen_lr_factor(5, sch, 0) == build.lr_factor(5, sch)
    assert build.frozen_lr_factor(29, sch, 30) == 0.0
    assert build.frozen_lr_factor(30, sch, 30) == pytest.approx(0.1 * build.lr_factor(30, sch))
    assert build.frozen_lr_factor(39, sch, 30) == pytest.approx(build.lr_factor(39, sch))
    assert build.frozen_lr_factor(60, sch, 30) == pytest.approx(0.55)
    opt = torch.optim.AdamW(groups)
    for prm in model.parameters():
        prm.grad = torch.ones_like(prm)
    build.drop_frozen_grads(opt, 29)
    for name, prm in model.named_parameters():
        assert (prm.grad is None) == name.startswith("event_backbone")
    for prm in model.parameters():
        prm.grad = torch.ones_like(prm)
    build.drop_frozen_grads(opt, 30)
    assert all(p.grad is not None for p in model.parameters())


def test_modality_masks_never_drop_both() -> None:
    gen = torch.Generator().manual_seed(0)
    rgb = torch.tensor([True, False] * 500)
    ev = torch.ones(1000, dtype=torch.bool)
    r, e = build.modality_masks(rgb, ev, 0.5, 0.49, gen)
    assert bool((r | e).all())
    assert not bool(r[1::2].any())  # absent RGB stays absent
    assert 0.3 < float((~r[::2]).float().mean()) < 0.7


def test_optimizer_and_rng_state_round_trip() -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    tensors, meta = optimizer_to_flat(opt.state_dict())
    restored = optimizer_from_flat(tensors, meta)
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(restored)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid, entry in s1["state"].items():
        for key, value in entry.items():
            assert torch.equal(value, s2["state"][pid][key])
    rt, rm = rng_state()
    expected = (np.random.rand(), torch.rand(2))  # noqa: NPY002 (global state on purpose)
    set_rng_state(rt, rm)
    assert np.random.rand() == expected[0]  # noqa: NPY002
    assert torch.equal(torch.rand(2), expected[1])


def test_event_encoder_loading(tmp_path: Path) -> None:
    net = lite_config(input_size=64, num_points=68, backbone_width=8)
    src = build.build_model(net, None, seed=1)
    dst = build.build_model(net, None, seed=2)
    path = tmp_path / "ssmer.safetensors"
    weights = {f"encoder.{k}": v for k, v in src.event_backbone.state_dict().items()}
    save_file({**weights, "projector.weight": torch.zeros(2, 2)}, path)
    assert build.load_event_encoder(dst, path) == len(weights)
    for k, v in src.event_backbone.state_dict().items():
        assert torch.equal(v, dst.event_backbone.state_dict()[k])
    wide = build.build_model(net.replace(backbone_width=12), None, seed=0)
    with pytest.raises(ValueError, match="does not fit the event backbone"):
        build.load_event_encoder(wide, path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="cannot read"):
        build.load_event_encoder(dst, tmp_path / "junk.safetensors")


def test_init_from_checkpoint_loads_all_weights_or_names_the_difference() -> None:
    from facealign_ros.model.checkpoint import load_checkpoint, read_metadata
    from facealign_ros.pipeline.config import default_model_path

    meta = read_metadata(default_model_path())
    pre = dict(meta.preprocessing)
    model = build.build_model(meta.config, None, seed=3)
    assert build.load_init_checkpoint(model, "shipped", pre) == len(model.state_dict())
    shipped, _ = load_checkpoint(default_model_path())
    for k, v in shipped.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    other = build.build_model(meta.config.replace(num_points=68), None, seed=3)
    with pytest.raises(ValueError, match="num_points: 70 vs run 68"):
        build.load_init_checkpoint(other, "shipped", pre)
    with pytest.raises(ValueError, match="other inputs"):
        build.load_init_checkpoint(model, "shipped", {**pre, "window_ms": 10.0})
