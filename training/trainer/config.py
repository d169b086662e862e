"""Training configuration: frozen dataclasses from YAML plus dotted ``key=value`` overrides.

Every section rejects unknown keys with the dotted name and the closest known key, and values
are checked against the field types (``optim.lr=3e-4`` is a float even though YAML 1.1 reads
``3e-4`` as a string). Free-form mappings are ``model.overrides`` (checked by
:class:`~facealign_ros.model.config.CMFAConfig`) and ``data.options`` (checked by the dataset of
``data.kind``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facealign_ros.model.config import PRESETS, CMFAConfig, preset


class ConfigError(ValueError):
    """A training configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class ModelSection:
    """Network: a preset plus field overrides.

    Attributes:
        preset: ``"lite"`` or ``"paper"``.
        overrides: :class:`CMFAConfig` fields to change. ``num_points``, ``input_size`` and
            ``event_channels`` are taken from the data when not given here.
        landmark_scheme: Scheme name; empty = the dataset's, else by point count.
        init_event_encoder: safetensors file of event-backbone weights (SSMER) for a fresh run.
        init_from: CMFA checkpoint (or ``shipped``) whose weights start a fresh run (fine-tuning);
            ``init_event_encoder``, if also given, then replaces the event backbone.
        mean_shape_samples: Training samples averaged into the start shape (when the dataset
            has no ``mean_shape()``).
    """

    preset: str = "lite"
    overrides: dict[str, Any] = field(default_factory=dict)
    landmark_scheme: str = ""
    init_event_encoder: str = ""
    init_from: str = ""
    mean_shape_samples: int = 256

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"model.preset: {self.preset!r} is not one of {sorted(PRESETS)}")
        try:
            preset(self.preset, **self.overrides)
        except ValueError as exc:
            raise ConfigError(f"model.overrides: {exc}") from exc
        _check(self.mean_shape_samples >= 1, "model.mean_shape_samples must be >= 1")

    def network(self, **data_fields: int) -> CMFAConfig:
        """The network config; data-derived fields fill in what ``overrides`` leaves out.

        Raises:
            ConfigError: An override contradicts the data (e.g. ``num_points``).
        """
        for key, value in data_fields.items():
            if key in self.overrides and self.overrides[key] != value:
                raise ConfigError(
                    f"model.overrides.{key}={self.overrides[key]} but the data has {value}"
                )
        return preset(self.preset, **{**data_fields, **self.overrides})


@dataclass(frozen=True)
class DataSection:
    """Data: what :func:`training.trainer.data.make_dataset` builds and how it is batched.

    Attributes:
        kind: ``"toy"`` (in-memory synthetic) or a kind of ``training.data.build_dataset``.
        batch_size: Samples per step *per process*.
        num_workers: DataLoader worker processes.
        train_split: Split trained on.
        val_split: Split evaluated every ``run.eval_every`` steps and at the end ("" = none).
        val_limit: Evaluate at most this many validation samples (0 = all).
        options: Kind-specific options (passed to the dataset factory with ``kind``).
    """

    kind: str = "toy"
    batch_size: int = 16
    num_workers: int = 0
    train_split: str = "train"
    val_split: str = "val"
    val_limit: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(bool(self.kind), "data.kind must not be empty")
        _check(self.batch_size >= 1, "data.batch_size must be >= 1")
        _check(self.num_workers >= 0, "data.num_workers must be >= 0")
        _check(self.val_limit >= 0, "data.val_limit must be >= 0")

    def factory_config(self) -> dict[str, Any]:
        """``{"kind": kind, **options}``: the dict handed to the dataset factory."""
        return {"kind": self.kind, **self.options}


@dataclass(frozen=True)
class OptimSection:
    """AdamW, gradient clipping and mixed precision.

    Attributes:
        lr: Peak learning rate.
        weight_decay: Decoupled weight decay (not applied to biases, norms and embeddings).
        betas: Adam betas.
        eps: Adam epsilon.
        grad_clip: Max global gradient norm (0 = no clipping).
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` autocast; used on CUDA only (fp16 with a
            GradScaler).
        lr_scales: parameter-name prefix -> LR multiplier, e.g. ``{event_backbone: 0.1}`` to
            fine-tune a pretrained encoder gently (``optim.lr_scales.event_backbone=0.1``);
            the longest matching prefix wins; every prefix must name some parameter.
        freeze_steps: parameter-name prefix -> optimizer steps during which those parameters
            are held (no update, no weight decay, out of the clipped norm), then released
            with a warm-up of ``schedule.warmup_steps``: a frozen-encoder warm-up before
            fine-tuning a pretrained encoder (``optim.freeze_steps.event_backbone=300``).
            Batch-norm statistics of a frozen module keep adapting to the data.
    """

    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    amp: str = "bf16"
    lr_scales: dict[str, float] = field(default_factory=dict)
    freeze_steps: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        _check_finite(self, "optim")
        _check(
            all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for v in self.freeze_steps.values()),
            "optim.freeze_steps values must be integers >= 0",
        )  # fmt: skip
        _check(
            all(isinstance(v, int | float) and v > 0 for v in self.lr_scales.values()),
            "optim.lr_scales values must be numbers > 0",
        )
        _check(self.lr > 0, "optim.lr must be > 0")
        _check(self.weight_decay >= 0, "optim.weight_decay must be >= 0")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optim.betas")
        _check(self.eps > 0 and self.grad_clip >= 0, "optim.eps > 0 and grad_clip >= 0")
        _check(self.amp in ("none", "bf16", "fp16"), "optim.amp must be none, bf16 or fp16")


@dataclass(frozen=True)
class ScheduleSection:
    """Linear warmup then cosine decay to ``min_lr_ratio * lr`` at ``steps``.

    Attributes:
        steps: Total optimizer steps.
        warmup_steps: Linear warmup steps.
        min_lr_ratio: Final learning rate as a fraction of the peak.
    """

    steps: int = 1000
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01

    def __post_init__(self) -> None:
        _check_finite(self, "schedule")
        _check(self.steps >= 1, "schedule.steps must be >= 1")
        _check(self.warmup_steps >= 0, "schedule.warmup_steps must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, "schedule.min_lr_ratio must be in [0, 1]")


@dataclass(frozen=True)
class LossSection:
    """Loss weights and warm-start training.

    Attributes:
        conf_weight: Weight of the confidence term of :func:`cmfa_loss`.
        conf_tau: Error (inter-ocular units) at which the confidence target is 1/e.
        p_warm: Fraction of steps that start from perturbed ground truth (tracking warm start)
            and run only the finest ``warm_stages`` stages.
        warm_noise: Std of that perturbation in crop units.
        warm_stages: Stages run in warm-start steps.
    """

    conf_weight: float = 0.1
    conf_tau: float = 0.05
    p_warm: float = 0.0
    warm_noise: float = 0.02
    warm_stages: int = 1

    def __post_init__(self) -> None:
        _check_finite(self, "loss")
        _check(self.conf_weight >= 0 and self.conf_tau > 0, "loss.conf_weight/conf_tau")
        _check(0 <= self.p_warm <= 1, "loss.p_warm must be in [0, 1]")
        _check(self.warm_noise >= 0 and self.warm_stages >= 1, "loss.warm_noise/warm_stages")


@dataclass(frozen=True)
class RunSection:
    """Where and how the run executes.

    Attributes:
        out_dir: Run directory (checkpoints, TensorBoard logs, final model).
        seed: Seed of data order, augmentation and initialisation.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        resume: ``"auto"`` (latest checkpoint in ``out_dir`` if any), ``"never"`` or a path.
        checkpoint_every: Steps between training checkpoints.
        keep_checkpoints: Most recent checkpoints kept.
        log_every: Steps between scalar logs.
        eval_every: Steps between validations (0 = only at the end).
        progress: Show a tqdm progress bar (rank 0).
        tensorboard: Write TensorBoard scalars (rank 0).
        deterministic: ``torch.use_deterministic_algorithms(True, warn_only=True)`` (CPU runs
            resume bit-exactly without it; CUDA kernels with atomics, e.g. ``grid_sample``'s
            backward, stay nondeterministic and only warn).
        threads: ``torch.set_num_threads`` when > 0.
    """

    out_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"
    resume: str = "auto"
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 50
    eval_every: int = 0
    progress: bool = True
    tensorboard: bool = True
    deterministic: bool = False
    threads: int = 0

    def __post_init__(self) -> None:
        # an empty out_dir would be the working directory: its config.yaml would be replaced
        _check(str(self.out_dir).strip() != "", "run.out_dir must name a directory")
        _check(self.device in ("auto", "cpu", "cuda"), "run.device must be auto, cpu or cuda")
        _check(self.checkpoint_every >= 1 and self.keep_checkpoints >= 1, "run.checkpoint_*")
        _check(self.log_every >= 1 and self.eval_every >= 0, "run.log_every/eval_every")
        _check(0 <= self.seed < 2**32 and self.threads >= 0,
               "run.seed must be in [0, 2^32) and run.threads >= 0")  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """The whole training configuration (see each section)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    loss: LossSection = field(default_factory=LossSection)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples become lists), loadable by :func:`config_from_dict`."""
        return _plain(dataclasses.asdict(self))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_finite(section: Any, name: str) -> None:
    """Every float of ``section`` (and of its dict-of-number fields) is finite (no NaN, inf)."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, v in items:
            if isinstance(v, float) and not math.isfinite(v):
                where = f"{name}.{f.name}" + (f".{key}" if key is not None else "")
                raise ConfigError(f"{where} must be a finite number, got {v}")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a field type, converting numeric strings and ints to floats."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, list | tuple):
            return tuple(_coerce(v, typing.get_args(hint)[0], where) for v in value)
    elif origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
        if value is None:
            return {}
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, Mapping):
            return _build(hint, value, where)
        if value is None:
            return hint()
    else:  # pragma: no cover - every field type is handled above
        raise TypeError(f"{where}: unsupported field type {hint}")
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where.rstrip('.')}: expected {name}, got {value!r}")


def _build(cls: type, raw: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {prefix}{near[0]}?)" if near else ""
            raise ConfigError(
                f"unknown config key {prefix}{key}{hint}; known keys: {', '.join(known)}"
            )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from exc


def config_from_dict(raw: Mapping[str, Any] | None, cls: type = TrainConfig) -> Any:
    """Build a :class:`TrainConfig` (or ``cls``, made of sections) from nested mappings.

    Unknown keys are rejected.

    Raises:
        ConfigError: Unknown key, wrong type or invalid value (the message names the key).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a training config must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    sections: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in hints:
            near = difflib.get_close_matches(str(key), list(hints), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"unknown config section {key!r}{hint}; known: {', '.join(hints)}")
        sections[key] = _coerce(value, hints[key], f"{key}.")
    return cls(**sections)


def parse_value(text: str) -> Any:
    """A YAML value, with numeric-looking strings (``3e-4``) turned into numbers."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"cannot read override value {text!r} as YAML (quote strings with * [ ] or :): {exc}"
        ) from exc
    if isinstance(value, str):
        for conv in (int, float):
            try:
                return conv(value)
            except ValueError:
                continue
    return value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides to a nested dict (a new dict is returned).

    Raises:
        ConfigError: An override without ``=``, with an empty key, or one that descends into a
            non-mapping value.
    """
    out: dict[str, Any] = _plain(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"bad override {item!r}: expected dotted.key=value")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"bad override {item!r}: {where} is not a section")
            node = child
        node[parts[-1]] = parse_value(text)
    return out


class _NoAliasLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses aliases.

    A config has no use for them, and nested aliases expand exponentially when the config is
    copied (ten lines can ask for gigabytes).
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"YAML aliases (*{event.anchor}) are not supported in configs "
                f"(line {event.start_mark.line + 1}); write the values out"
            )
        return super().compose_node(parent, index)


def load_config(
    path: str | Path | None, overrides: Sequence[str] = (), cls: type = TrainConfig
) -> Any:
    """Read a YAML config (None = all defaults) and apply overrides; builds ``cls``.

    Raises:
        ConfigError: Unreadable file, invalid YAML, unknown keys, bad values or overrides.
    """
    raw: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
            raw = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
        if raw is None:  # e.g. --config /dev/null: not silently the defaults' toy run
            raise ConfigError(f"config {path} is empty")
        if not isinstance(raw, dict):
            raise ConfigError(f"config {path} must hold a mapping at the top level")
    return config_from_dict(apply_overrides(raw, overrides), cls)


def dump_config(cfg: Any) -> str:
    """YAML text of ``cfg`` (round-trips through :func:`load_config`)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
