"""Training config: YAML + dotted overrides, strict keys and types, shipped configs load."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.trainer.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


@pytest.mark.parametrize("name", ["lite.yaml", "smoke.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert cfg.model.preset == "lite"
    assert cfg.schedule.steps >= 20


def test_lite_recipe_values() -> None:
    cfg = load_config(CONFIGS / "lite.yaml")
    assert (cfg.data.kind, cfg.data.batch_size) == ("bags", 32)
    assert (cfg.optim.lr, cfg.schedule.warmup_steps, cfg.run.checkpoint_every) == (1e-3, 500, 500)


def test_overrides_are_typed() -> None:
    cfg = load_config(
        CONFIGS / "smoke.yaml",
        ["optim.lr=3e-4", "run.progress=false", "optim.betas=[0.8,0.9]", "data.options.size=32"],
    )
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.run.progress is False
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.data.options["size"] == 32
    assert cfg.data.factory_config()["kind"] == "toy"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=1"], r"unknown config key optim\.lrr \(did you mean optim\.lr\?\)"),
        (["optimizer.lr=1"], "unknown config section 'optimizer'"),
        (["optim.lr=fast"], r"optim\.lr: expected float"),
        (["run.seed=1.5"], r"run\.seed: expected int"),
        (["run.progress=maybe"], r"run\.progress: expected bool"),
        (["optim.amp=fp8"], "optim.amp must be"),
        (["model.overrides.d_modle=64"], "unknown CMFAConfig keys"),
        (["model.preset=huge"], "model.preset"),
        (["optim.lr"], "expected dotted.key=value"),
        (["optim.lr.x=1"], r"optim\.lr is not a section"),
        (["schedule.steps=0"], "schedule.steps"),
        (["data.options.paths=[*a]"], "cannot read override value"),
        (["optim.lr_scales.event_backbone=0"], "lr_scales values must be numbers > 0"),
        (["optim.freeze_steps.event_backbone=-1"], "freeze_steps values must be integers"),
        (["optim.freeze_steps.event_backbone=2.5"], "freeze_steps values must be integers"),
    ],
)
def test_bad_keys_and_values_are_rejected(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIGS / "smoke.yaml", overrides)


def test_unknown_key_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("run:\n  out_dir: x\n  chekpoint_every: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"run\.chekpoint_every"):
        load_config(path)
    path.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)
    )  # 10^9 strings once copied: it hung, growing memory
    path.write_text(bomb, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"aliases \(\*a0\) are not supported.*line 2"):
        load_config(path)
    path.write_text("# nothing but a comment\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is empty"):  # not the defaults' toy run
        load_config(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(path)


def test_round_trip_and_frozen(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "lite.yaml", ["optim.lr=2e-3"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg), encoding="utf-8")
    assert load_config(path) == cfg
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(AttributeError):
        cfg.optim.lr = 1.0  # type: ignore[misc]
    assert config_from_dict(None) == TrainConfig()


def test_network_takes_data_fields_and_rejects_conflicts() -> None:
    cfg = load_config(None, ["model.overrides.num_points=98"])
    with pytest.raises(ConfigError, match="num_points=98 but the data has 68"):
        cfg.model.network(num_points=68, input_size=64, event_channels=3)
    net = load_config(None).model.network(num_points=70, input_size=64, event_channels=5)
    assert (net.num_points, net.input_size, net.event_channels) == (70, 64, 5)


def test_apply_overrides_does_not_mutate() -> None:
    raw = {"optim": {"lr": 1.0}}
    out = apply_overrides(raw, ["optim.lr=2", "run.seed=3"])
    assert raw == {"optim": {"lr": 1.0}}
    assert out == {"optim": {"lr": 2}, "run": {"seed": 3}}
