"""CMFA network configuration: one frozen dataclass and two presets (``paper`` and ``lite``).

The ``paper`` preset follows the authors' released configuration (iulab-hongik/CMFA-SSMER,
``CMFA/Config/default.py``): two HRNet-W18 backbones at 256x256 giving 64x64 maps of 256 channels,
three coarse-to-fine stages with 7x7 patches of half-width 8, 4 and 2 feature cells, 6 decoder
layers, 8 heads, d=256, feed-forward 1024, dropout 0.1, stage loss weights 0.2/0.3/0.5.

The ``lite`` preset runs the same code with a small CNN backbone at 128x128, fewer patch
channels, stages and layers, sized for a 2-core CPU (cost notes in :mod:`facealign_ros.model.cmfa`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

BACKBONES = ("hrnet_w18", "lite")


@dataclass(frozen=True)
class CMFAConfig:
    """Hyper-parameters of the CMFA network; frozen, validated, JSON-able.

    Attributes:
        num_points: Number of landmarks N (any positive count: 68, 70, 98, ...).
        input_size: Side of the square input crop in pixels (multiple of 32).
        rgb_channels: Channels of the RGB (or mono) input; values expected in [0, 1].
        event_channels: Channels of the event representation (e.g. 2-5 voxel bins).
        backbone: ``"hrnet_w18"`` (paper) or ``"lite"`` (small CNN).
        backbone_width: HRNet base width (18 for W18) or the lite CNN base width.
        feature_dim: Channels of the stride-4 feature map that patches are sampled from.
        d_model: Transformer width d.
        num_heads: Attention heads (d_model must be divisible by it).
        num_layers: Decoder layers per stage (weights shared across stages, as the authors).
        ffn_dim: Hidden width of the feed-forward block.
        dropout: Dropout in attention and feed-forward blocks.
        patch_size: P, side of the P x P grid sampled around each landmark.
        half_widths: Patch half-width per stage in feature-map cells (coarse to fine).
        stage_weights: Loss weight per stage (same length as ``half_widths``).
        p_drop_rgb: Training-time probability that a sample's RGB input is replaced by the
            learned missing-modality token (modality dropout).
        p_drop_event: Same for the event input (never both for one sample).
    """

    num_points: int = 98
    input_size: int = 256
    rgb_channels: int = 3
    event_channels: int = 3
    backbone: str = "hrnet_w18"
    backbone_width: int = 18
    feature_dim: int = 256
    d_model: int = 256
    num_heads: int = 8
    num_layers: int = 6
    ffn_dim: int = 1024
    dropout: float = 0.1
    patch_size: int = 7
    half_widths: tuple[float, ...] = (8.0, 4.0, 2.0)
    stage_weights: tuple[float, ...] = (0.2, 0.3, 0.5)
    p_drop_rgb: float = 0.0
    p_drop_event: float = 0.0

    def __post_init__(self) -> None:
        # Normalise sequences so that configs built from JSON lists compare equal.
        object.__setattr__(self, "half_widths", tuple(float(h) for h in self.half_widths))
        object.__setattr__(self, "stage_weights", tuple(float(w) for w in self.stage_weights))
        checks: list[tuple[bool, str]] = [
            (self.num_points >= 1, "num_points must be >= 1"),
            (self.input_size >= 32 and self.input_size % 32 == 0, "input_size: multiple of 32"),
            (self.rgb_channels >= 1, "rgb_channels must be >= 1"),
            (self.event_channels >= 1, "event_channels must be >= 1"),
            (self.backbone in BACKBONES, f"backbone must be one of {BACKBONES}"),
            (self.backbone_width >= 4, "backbone_width must be >= 4"),
            (self.feature_dim >= 1, "feature_dim must be >= 1"),
            (self.d_model >= 1 and self.num_heads >= 1, "d_model and num_heads must be >= 1"),
            (self.d_model % self.num_heads == 0, "d_model must be divisible by num_heads"),
            (self.num_layers >= 1, "num_layers must be >= 1"),
            (self.ffn_dim >= 1, "ffn_dim must be >= 1"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.patch_size >= 1, "patch_size must be >= 1"),
            (len(self.half_widths) >= 1, "half_widths needs at least one stage"),
            (all(h > 0 for h in self.half_widths), "half_widths must be > 0"),
            (len(self.stage_weights) == len(self.half_widths), "one stage_weight per stage"),
            (all(w >= 0 for w in self.stage_weights), "stage_weights must be >= 0"),
            (0.0 <= self.p_drop_rgb < 1.0, "p_drop_rgb must be in [0, 1)"),
            (0.0 <= self.p_drop_event < 1.0, "p_drop_event must be in [0, 1)"),
            (self.p_drop_rgb + self.p_drop_event < 1.0, "p_drop_rgb + p_drop_event must be < 1"),
        ]
        errors = [msg for ok, msg in checks if not ok]
        if errors:
            raise ValueError("invalid CMFAConfig: " + "; ".join(errors))

    @property
    def num_stages(self) -> int:
        """Number of coarse-to-fine stages S."""
        return len(self.half_widths)

    @property
    def feature_size(self) -> int:
        """Side of the stride-4 feature map (input_size / 4) in cells."""
        return self.input_size // 4

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CMFAConfig:
        """Build from a mapping, rejecting unknown keys.

        Args:
            data: Field name -> value; missing fields take the dataclass defaults.

        Returns:
            The validated config.

        Raises:
            ValueError: On unknown keys or invalid values.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CMFAConfig keys: {unknown}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> CMFAConfig:
        """Copy with some fields changed (unknown fields raise ValueError)."""
        return CMFAConfig.from_dict({**self.to_dict(), **changes})


def paper_config(**overrides: Any) -> CMFAConfig:
    """The authors' configuration (HRNet-W18 x2, 256x256, 3 stages, 6 layers, d=256, 98 points).

    Args:
        **overrides: Fields to change, e.g. ``num_points=68`` or ``event_channels=5``.
    """
    return CMFAConfig().replace(**overrides)


def lite_config(**overrides: Any) -> CMFAConfig:
    """CPU/edge configuration: small CNN at 128x128, 2 stages x 2 layers, d=96, 68 points.

    Modality dropout is on by default so that the same weights run fused, event-only and
    RGB-only.

    Args:
        **overrides: Fields to change, e.g. ``num_points=98``.
    """
    base = CMFAConfig(
        num_points=68,
        input_size=128,
        backbone="lite",
        backbone_width=16,
        feature_dim=32,
        d_model=96,
        num_heads=4,
        num_layers=2,
        ffn_dim=192,
        dropout=0.0,
        patch_size=5,
        half_widths=(4.0, 2.0),
        stage_weights=(0.4, 0.6),
        p_drop_rgb=0.3,
        p_drop_event=0.1,
    )
    return base.replace(**overrides)


PRESETS: dict[str, Callable[..., CMFAConfig]] = {"paper": paper_config, "lite": lite_config}


def preset(name: str, **overrides: Any) -> CMFAConfig:
    """Config of a named preset (``"paper"`` or ``"lite"``) with optional overrides.

    Raises:
        ValueError: Unknown preset name or unknown/invalid override.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown CMFA preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name](**overrides)
