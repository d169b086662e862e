"""CMFAConfig: presets, validation, unknown keys, JSON round trip."""

from __future__ import annotations

import json

import pytest

from facealign_ros.model.config import CMFAConfig, lite_config, paper_config, preset


def test_paper_preset_matches_authors() -> None:
    cfg = paper_config()
    assert cfg.backbone == "hrnet_w18"
    assert cfg.backbone_width == 18
    assert (cfg.input_size, cfg.feature_size, cfg.feature_dim) == (256, 64, 256)
    assert (cfg.num_stages, cfg.patch_size, cfg.half_widths) == (3, 7, (8.0, 4.0, 2.0))
    assert (cfg.num_layers, cfg.num_heads, cfg.d_model, cfg.ffn_dim) == (6, 8, 256, 1024)
    assert cfg.num_points == 98
    assert cfg.stage_weights == (0.2, 0.3, 0.5)


def test_lite_preset_is_small_and_configurable() -> None:
    cfg = lite_config()
    assert cfg.backbone == "lite"
    assert cfg.input_size == 128
    assert 64 <= cfg.d_model <= 128
    assert cfg.num_stages < 3
    assert cfg.num_layers < 6
    assert lite_config(num_points=98).num_points == 98
    assert preset("lite", event_channels=5).event_channels == 5


def test_round_trip_through_json() -> None:
    for cfg in (paper_config(), lite_config(num_points=70)):
        back = CMFAConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg


def test_unknown_keys_rejected() -> None:
    with pytest.raises(ValueError, match="unknown CMFAConfig keys"):
        CMFAConfig.from_dict({"num_points": 68, "num_point": 68})
    with pytest.raises(ValueError, match="unknown"):
        lite_config(bogus=1)
    with pytest.raises(ValueError, match="unknown CMFA preset"):
        preset("huge")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_size": 100}, "multiple of 32"),
        ({"d_model": 90, "num_heads": 4}, "divisible"),
        ({"stage_weights": (1.0,)}, "one stage_weight per stage"),
        ({"backbone": "resnet"}, "backbone"),
        ({"p_drop_rgb": 0.6, "p_drop_event": 0.5}, "p_drop_rgb \\+ p_drop_event"),
        ({"num_points": 0}, "num_points"),
    ],
)
def test_invalid_values_rejected(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paper_config(**change)


def test_frozen() -> None:
    cfg = lite_config()
    with pytest.raises(AttributeError):
        cfg.d_model = 3  # type: ignore[misc]
