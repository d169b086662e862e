"""SSMER pretraining configuration (YAML + dotted overrides, like ``facealign train``).

Sections ``model`` (:class:`SSMERModel`), ``data`` (:class:`SSMERData`), and ``optim``,
``schedule``, ``run`` shared with CMFA training (:mod:`training.trainer.config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facealign_ros.face.preprocess import InputSpec
from facealign_ros.model.config import PRESETS, CMFAConfig, preset
from training.ssmer.face_boxes import BOX_SOURCES
from training.ssmer.views import ViewAugment, check_views
from training.trainer.config import (
    ConfigError,
    OptimSection,
    RunSection,
    ScheduleSection,
    _check,
    _check_finite,
    _plain,
    load_config,
)


@dataclass(frozen=True)
class SSMERModel:
    """The encoder (a CMFA event backbone) and the SimSiam heads.

    Attributes:
        preset: CMFA preset whose event backbone is pretrained (``lite`` or ``paper``).
        overrides: CMFA config fields (must match the later ``facealign train`` run's
            backbone fields: ``backbone``, ``backbone_width``, ``feature_dim``).
        proj_dim: projector width (paper: 2048).
        pred_dim: predictor bottleneck (paper: 512).
        dense_weight: weight of the dense term (:func:`~training.ssmer.model.dense_simsiam_loss`,
            features of the same scene point agree across views) added to the pooled SimSiam
            loss; 0 (default, the paper's objective) turns it off.
        dense_grid: the dense term's points: a ``dense_grid x dense_grid`` grid over the box.
        dense_dim: width of the dense projector (its predictor bottleneck is a quarter).
    """

    preset: str = "lite"
    overrides: dict[str, Any] = field(default_factory=dict)
    proj_dim: int = 2048
    pred_dim: int = 512
    dense_weight: float = 0.0
    dense_grid: int = 7
    dense_dim: int = 128

    def __post_init__(self) -> None:
        _check(self.preset in PRESETS, f"model.preset must be one of {sorted(PRESETS)}")
        _check(self.proj_dim >= 8 and self.pred_dim >= 4, "model.proj_dim/pred_dim too small")
        _check_finite(self, "model")
        _check(self.dense_weight >= 0, "model.dense_weight must be >= 0")
        _check(self.dense_grid >= 1 and self.dense_dim >= 8, "model.dense_grid/dense_dim too small")
        # points per view x views x batch are sampled from every feature map: keep it sane
        _check(self.dense_grid <= 32 and self.dense_dim <= 4096, "model.dense_grid <= 32 and "
               "model.dense_dim <= 4096")  # fmt: skip

    @property
    def dense(self) -> bool:
        """Whether the dense term is on."""
        return self.dense_weight > 0

    def network(self, spec: InputSpec) -> CMFAConfig:
        """The CMFA config whose ``event_backbone`` this run pretrains."""
        fields = {"input_size": spec.size, "event_channels": spec.event_channels}
        try:
            return preset(self.preset, **{**self.overrides, **fields})
        except ValueError as exc:
            raise ConfigError(f"model.overrides: {exc}") from exc


@dataclass(frozen=True)
class SSMERData:
    """Where windows come from and how they become views.

    Attributes:
        bags: bags, globs or folders of bags (``--bags`` adds to these).
        topic: EventPacket topic ("" = every EventPacket topic of each bag).
        input: :class:`InputSpec` fields (must equal the later CMFA training's ``input``).
        views: view names: representations of ``input`` or ``all`` (>= 2; pairs are summed).
        augment: :class:`~training.ssmer.views.ViewAugment` fields.
        stride_ms: spacing of window ends within a recording, ms.
        interleave: recordings read at once per data shard.
        shuffle_buffer: windows held for shuffling per data shard.
        batch_size: windows per step per process.
        num_workers: data-loader worker processes per process.
        box_source: where a window's crop is centred: ``activity`` (the densest event
            activity; needs nothing) or ``detector`` (BlazeFace on the recording's RGB frames,
            registered to the event sensor; the activity box where it finds no face or a bag
            has no RGB): :mod:`training.ssmer.face_boxes`.
        detector_model: BlazeFace ``.tflite`` for ``box_source: detector`` ("" = the one
            ``facealign fetch-detector`` cached).
    """

    bags: tuple[str, ...] = ()
    topic: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    views: tuple[str, ...] = ("event_frame", "time_surface", "voxel")
    augment: dict[str, Any] = field(default_factory=dict)
    stride_ms: float = 20.0
    interleave: int = 4
    shuffle_buffer: int = 64
    batch_size: int = 64
    num_workers: int = 2
    box_source: str = "activity"
    detector_model: str = ""

    def __post_init__(self) -> None:
        _check(
            self.box_source in BOX_SOURCES,
            f"data.box_source must be one of {list(BOX_SOURCES)}, got {self.box_source!r}",
        )
        _check(self.batch_size >= 2, "data.batch_size must be >= 2 (batch norm)")
        _check(self.num_workers >= 0, "data.num_workers must be >= 0")
        _check_finite(self, "data")
        _check(self.stride_ms >= 0.001, "data.stride_ms must be >= 0.001")
        try:
            check_views(self.views, self.spec)
            ViewAugment.from_dict(self.augment)
        except ValueError as exc:
            raise ConfigError(f"data: {exc}") from exc

    @property
    def spec(self) -> InputSpec:
        """The input specification."""
        try:
            return InputSpec.from_dict(self.input)
        except ValueError as exc:
            raise ConfigError(f"data.input: {exc}") from exc


@dataclass(frozen=True)
class SSMERConfig:
    """The whole SSMER configuration."""

    model: SSMERModel = field(default_factory=SSMERModel)
    data: SSMERData = field(default_factory=SSMERData)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    run: RunSection = field(default_factory=lambda: RunSection(out_dir="runs/ssmer"))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))


def load_ssmer_config(path: str | Path | None, overrides: list[str]) -> SSMERConfig:
    """Read an SSMER YAML config and apply dotted overrides.

    Raises:
        ConfigError: unreadable file, unknown keys, bad values.
    """
    return load_config(path, overrides, cls=SSMERConfig)
