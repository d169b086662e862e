"""Building blocks of a run: datasets, model, event-encoder init, optimizer and LR schedule.

Dataset contract (what :func:`make_dataset` returns; ``training.data.build_dataset`` for bags):
a ``torch.utils.data.Dataset`` of dicts with ``events`` (C, S, S) float32, ``rgb`` (3, S, S) float32
in [0, 1], ``rgb_present``/``event_present`` bool, ``landmarks`` (N, 2) float32 in [0, 1] crop
coordinates, ``visible`` (N,), ``pose_deg`` (3,) (NaN = unknown), ``light`` 0/1/2, ``motion`` 0/1,
``A`` (2, 3) float64 and ``stamp_ns`` int64. Optional attributes used when present:
``set_epoch(epoch)`` (called before each epoch; augmentation must come from
:func:`~training.trainer.sampler.sample_rng` of (seed, epoch, index)), ``landmark_scheme`` (str),
``spec`` (the :class:`~facealign_ros.face.preprocess.InputSpec`, recorded in checkpoints) or
``representations`` (tuple of str) + ``preprocessing`` (JSON-able dict), ``mean_shape()``
((N, 2) array), and for evaluation ``pose_fn`` and ``intrinsics(index)`` (see
:mod:`training.evaluate`).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor, nn
from torch.utils.data import Dataset

from facealign_ros.face.landmarks import LandmarkScheme, get_scheme
from facealign_ros.model.cmfa import CMFA, mean_shape_from
from facealign_ros.model.config import CMFAConfig
from training.trainer.config import DataSection, ModelSection, OptimSection, ScheduleSection

ENCODER_PREFIXES = ("", "event_backbone.", "encoder.", "backbone.", "module.encoder.")


class DivergedError(ValueError):
    """The loss of a step is NaN or infinite: the run stops before that step's update."""


def require_finite_loss(loss: Tensor, step: int, lr: float) -> None:
    """Stop a run whose loss went non-finite, before its backward pass and update.

    A NaN loss means NaN weights after the update (every later checkpoint poisoned), and on
    the CPU the backward of ``grid_sample`` on NaN points crashes the process outright.

    Raises:
        DivergedError: naming the step and LR.
    """
    if not bool(torch.isfinite(loss.detach()).all()):
        raise DivergedError(
            f"step {step}: the loss is {float(loss.detach()):g} at lr {lr:.3g}; the run diverged "
            "(lower optim.lr, check the data); checkpoints written before this step are intact"
        )


def make_dataset(data: DataSection | Mapping[str, Any], split: str, seed: int) -> Dataset:
    """Dataset of ``split``: the toy dataset for ``kind: toy``, else ``training.data``'s factory.

    Args:
        data: The data section, or a factory config ``{"kind": ..., **options}``.
        split: Split name (``train``, ``val``, ``test``, ...).
        seed: Base seed.
    """
    cfg = data.factory_config() if isinstance(data, DataSection) else dict(data)
    if cfg.get("kind") == "toy":
        from training.trainer.toy import build_toy

        return build_toy(cfg, split, seed)
    from training.data import build_dataset  # lazy: the bag reader is heavier

    return build_dataset(cfg, split, seed)


def data_fields(sample: Mapping[str, Any]) -> dict[str, int]:
    """Network fields implied by a sample: ``num_points``, ``input_size``, ``event_channels``.

    Raises:
        ValueError: The sample does not follow the contract (non-square or mismatched crops).
    """
    ev = np.asarray(sample["events"])
    rgb = np.asarray(sample["rgb"])
    lms = np.asarray(sample["landmarks"])
    if ev.ndim != 3 or ev.shape[1] != ev.shape[2] or rgb.shape[1:] != ev.shape[1:]:
        raise ValueError(f"events {ev.shape} / rgb {rgb.shape} must be (C, S, S) of one size S")
    if lms.ndim != 2 or lms.shape[1] != 2:
        raise ValueError(f"landmarks must be (N, 2), got {lms.shape}")
    return {"num_points": lms.shape[0], "input_size": ev.shape[1], "event_channels": ev.shape[0]}


def scheme_for(dataset: Dataset, model: ModelSection, num_points: int) -> LandmarkScheme:
    """The landmark scheme: the config's, else the dataset's, else by point count."""
    name = model.landmark_scheme or getattr(dataset, "landmark_scheme", "")
    scheme = get_scheme(name) if name else get_scheme(num_points)
    if scheme.n_points != num_points:
        raise ValueError(
            f"landmark scheme {scheme.name} has {scheme.n_points} points, data {num_points}"
        )
    return scheme


def dataset_metadata(dataset: Dataset) -> tuple[tuple[str, ...], dict[str, Any]]:
    """``(representations, preprocessing)`` for checkpoint metadata.

    From the dataset's ``spec`` (an ``InputSpec``: its representations and ``to_dict()``), else
    its ``representations`` and ``preprocessing`` attributes, else ``("unspecified",)`` and {}.
    """
    spec = getattr(dataset, "spec", None)
    if spec is not None and hasattr(spec, "to_dict"):
        return tuple(spec.representations), dict(spec.to_dict())
    reps = tuple(getattr(dataset, "representations", ("unspecified",)))
    return reps, dict(getattr(dataset, "preprocessing", {}))


def warm_init(gt: Tensor, face: Tensor | None, mean_shape: Tensor, noise: Tensor) -> Tensor:
    """Start landmarks of a warm-started training step, ``(B, N, 2)`` in ``[0, 1]``.

    A face crop starts at its ground truth plus ``noise`` (the previous frame's landmarks when
    tracking); a negative crop (``face`` False) has no landmarks to start near and starts at
    ``mean_shape`` plus ``noise``, as a track that drifted onto background does at run time
    (its ground-truth placeholder would be a shape no run ever starts from, a free hint).
    """
    start = gt
    if face is not None and not bool(face.all()):
        mean = mean_shape.to(gt.device, gt.dtype).expand_as(gt)
        start = torch.where(face.to(gt.device)[:, None, None], gt, mean)
    return (start + noise).clamp(0.0, 1.0)


def dataset_mean_shape(dataset: Dataset, limit: int) -> np.ndarray:
    """(N, 2) start shape: ``dataset.mean_shape()`` or the mean of the first ``limit`` samples."""
    if hasattr(dataset, "mean_shape"):
        return np.asarray(dataset.mean_shape(), dtype=np.float32)
    n = min(len(dataset), limit)  # type: ignore[arg-type]
    items = [dataset[i] for i in range(n)]
    faces = [it["landmarks"] for it in items if it.get("face_present", True)]  # not negatives
    return mean_shape_from(np.stack([np.asarray(x) for x in faces or [items[0]["landmarks"]]]))


def build_model(net: CMFAConfig, mean_shape: np.ndarray | None, seed: int) -> CMFA:
    """CMFA with weights initialised from ``seed`` (independent of the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CMFA(net, mean_shape=mean_shape)


def load_event_encoder(model: CMFA, path: str | Path) -> int:
    """Load event-backbone weights (e.g. an SSMER encoder) into ``model.event_backbone``.

    See :func:`load_backbone_weights`; returns the number of tensors loaded.
    """
    return load_backbone_weights(model.event_backbone, path)


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> int:
    """Load event-backbone weights (e.g. an SSMER encoder) from a safetensors file.

    Keys must match ``backbone.state_dict()`` exactly, possibly behind one common
    prefix among :data:`ENCODER_PREFIXES` (``event_backbone.``, ``encoder.``, ...); other
    tensors in the file (projector, predictor) are ignored only when a prefix selects the
    encoder.

    Returns:
        Number of tensors loaded.

    Raises:
        ValueError: Unreadable file, or names/shapes that do not match the backbone.
    """
    p = Path(path)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    except Exception as exc:
        raise ValueError(f"event encoder {p}: cannot read safetensors ({exc})") from exc
    expected = backbone.state_dict()
    best: tuple[int, str] = (-1, "")
    for prefix in ENCODER_PREFIXES:
        hits = sum(1 for k in expected if prefix + k in tensors)
        best = max(best, (hits, prefix))
    prefix = best[1]
    picked = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(picked))
    unexpected = sorted(set(picked) - set(expected)) if not prefix else []
    bad = [
        f"{k}: file {tuple(picked[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in picked and picked[k].shape != v.shape
    ]
    if missing or unexpected or bad:
        raise ValueError(
            f"event encoder {p} does not fit the event backbone (prefix {prefix!r}): "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}, "
            f"shape mismatches {bad[:5]}"
        )
    backbone.load_state_dict({k: picked[k] for k in expected}, strict=True)
    return len(expected)


ENCODER_INPUT_KEYS = ("size", "representations", "voxel_bins", "window_ms", "tau_fraction",
                      "count_scale")  # fmt: skip


def check_encoder_input(path: str | Path, preprocessing: Mapping[str, Any]) -> None:
    """Refuse an SSMER encoder pretrained on other inputs than this run's.

    Files without SSMER metadata (``format: facealign_ros.ssmer``) are not checked: only their
    tensor names and shapes are (:func:`load_event_encoder`).

    Args:
        path: the encoder file.
        preprocessing: this run's ``InputSpec.to_dict()``.

    Raises:
        ValueError: the encoder saw a different channel layout, crop size or window.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
    except Exception as exc:
        raise ValueError(f"event encoder {path}: cannot read safetensors ({exc})") from exc
    if header.get("format") != "facealign_ros.ssmer":
        return
    theirs = json.loads(header.get("meta", "{}")).get("preprocessing", {})
    diff = [
        f"{k}: encoder {theirs.get(k)!r} vs run {preprocessing.get(k)!r}"
        for k in ENCODER_INPUT_KEYS
        if k in theirs and k in preprocessing and theirs[k] != preprocessing[k]
    ]
    if diff:
        raise ValueError(
            f"event encoder {path} was pretrained on other inputs: {'; '.join(diff)} "
            "(set data.options.input like the SSMER config's data.input)"
        )


TRAINING_ONLY_FIELDS = ("dropout", "p_drop_rgb", "p_drop_event", "stage_weights")
"""CMFA config fields that a fine-tune may change (they do not change the weights' shapes)."""


def init_path(path: str | Path) -> Path:
    """The file of a ``model.init_from`` value (``shipped`` = the package's lite weights)."""
    if str(path) == "shipped":
        from facealign_ros.pipeline.config import default_model_path

        return Path(default_model_path())
    return Path(path)


def init_lineage(path: str | Path) -> tuple[dict[str, str], ...]:
    """Lineage recorded in weights fine-tuned from ``path`` (see ``CheckpointMeta.lineage``).

    Raises:
        ValueError: unreadable checkpoint.
    """
    from facealign_ros.model.checkpoint import CheckpointError, lineage_of

    try:
        return lineage_of(init_path(path))
    except CheckpointError as exc:
        raise ValueError(f"init checkpoint: {exc}") from exc


def load_init_checkpoint(model: CMFA, path: str | Path, preprocessing: Mapping[str, Any]) -> int:
    """Start a fresh run from a CMFA checkpoint's weights (fine-tuning), e.g. the shipped ones.

    ``path`` may be ``shipped`` for the package's lite weights. The checkpoint's network config
    and input preprocessing must equal this run's (same preset, points, crop, channels).

    Returns:
        Number of tensors loaded.

    Raises:
        ValueError: unreadable checkpoint, or a different network or preprocessing.
    """
    from safetensors.torch import load_file

    from facealign_ros.model.checkpoint import CheckpointError, read_metadata

    path = init_path(path)
    try:
        meta = read_metadata(path)
    except CheckpointError as exc:
        raise ValueError(f"init checkpoint: {exc}") from exc
    if meta.config != model.config:
        mine, theirs = model.config.to_dict(), meta.config.to_dict()
        diff = [
            f"{k}: {theirs.get(k)!r} vs run {v!r}" for k, v in mine.items() if theirs.get(k) != v
        ]
        raise ValueError(f"init checkpoint {path} has another network: {'; '.join(diff)}")
    pre = dict(meta.preprocessing)
    diff = [k for k in ENCODER_INPUT_KEYS if k in pre and pre[k] != preprocessing.get(k)]
    if diff:
        raise ValueError(
            f"init checkpoint {path} was trained on other inputs ({', '.join(diff)} differ); "
            "set data.options.input like its preprocessing"
        )
    state = load_file(str(path))
    model.load_state_dict(state, strict=True)
    return len(state)


def param_groups(
    model: nn.Module,
    weight_decay: float,
    lr: float = 1e-3,
    lr_scales: dict[str, float] | None = None,
    freeze_steps: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """AdamW groups: weight decay or not, per LR scale and frozen warm-up.

    Decay for weight matrices/kernels, none for biases, norms and embeddings; one such pair per
    LR scale of ``lr_scales`` (parameter-name prefix -> multiplier of ``lr``) and per warm-up of
    ``freeze_steps`` (prefix -> optimizer steps during which those parameters are held; each
    group carries it as ``"freeze_steps"``, 0 for the rest). In both, the longest matching
    prefix wins. Groups that are never frozen come first (the logged LR is the first group's).

    Raises:
        ValueError: a prefix of ``lr_scales`` or ``freeze_steps`` that names no trainable
            parameter.
    """
    scales, freezes = dict(lr_scales or {}), dict(freeze_steps or {})
    groups: dict[tuple[int, float, bool], list[nn.Parameter]] = {}
    used: set[tuple[str, str]] = set()

    def pick(table: dict[str, Any], kind: str, name: str) -> str | None:
        match = max((p for p in table if name.startswith(p)), key=len, default=None)
        if match is not None:
            used.add((kind, match))
        return match

    for name, prm in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if not prm.requires_grad:
            continue
        s_match, f_match = pick(scales, "lr_scales", name), pick(freezes, "freeze_steps", name)
        scale = float(scales[s_match]) if s_match is not None else 1.0
        freeze = int(freezes[f_match]) if f_match is not None else 0
        groups.setdefault((freeze, scale, prm.dim() > 1), []).append(prm)
    for kind, table in (("lr_scales", scales), ("freeze_steps", freezes)):
        if unused := sorted(set(table) - {p for k, p in used if k == kind}):
            raise ValueError(f"optim.{kind}: no trainable parameter starts with {unused}")
    order = sorted(groups.items(), key=lambda kv: (kv[0][0] > 0, -kv[0][1], not kv[0][2], kv[0][0]))
    return [
        {
            "params": prms,
            "weight_decay": weight_decay if decay else 0.0,
            "lr": lr * scale,
            "freeze_steps": freeze,
        }
        for (freeze, scale, decay), prms in order
    ]


def build_optimizer(model: nn.Module, optim: OptimSection) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`."""
    return torch.optim.AdamW(
        param_groups(model, optim.weight_decay, optim.lr, optim.lr_scales, optim.freeze_steps),
        lr=optim.lr,
        betas=(optim.betas[0], optim.betas[1]),
        eps=optim.eps,
    )


def build_optimization(
    model: nn.Module, optim: OptimSection, schedule: ScheduleSection, device: torch.device
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR, torch.amp.GradScaler, str]:
    """``(optimizer, LR scheduler, grad scaler, amp mode)`` of a run on ``device``.

    AMP (``optim.amp``) is used on CUDA only ("none" on the CPU); the scaler is enabled for fp16.
    """
    opt = build_optimizer(model, optim)
    lambdas = [
        functools.partial(frozen_lr_factor, schedule=schedule, freeze_steps=g["freeze_steps"])
        for g in opt.param_groups
    ]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambdas)
    amp = optim.amp if device.type == "cuda" else "none"
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    return opt, sched, scaler, amp


def lr_factor(step: int, schedule: ScheduleSection) -> float:
    """LR multiplier at ``step``: linear warmup from 1/warmup, then cosine to ``min_lr_ratio``."""
    if step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    span = max(1, schedule.steps - schedule.warmup_steps)
    t = min(1.0, (step - schedule.warmup_steps) / span)
    return schedule.min_lr_ratio + (1 - schedule.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def frozen_lr_factor(step: int, schedule: ScheduleSection, freeze_steps: int = 0) -> float:
    """LR multiplier of a group held for its first ``freeze_steps`` steps.

    0 while frozen; then :func:`lr_factor` times a linear ramp over ``schedule.warmup_steps``
    steps from the unfreezing, so the released parameters warm up as the run did.
    """
    if step < freeze_steps:
        return 0.0
    factor = lr_factor(step, schedule)
    if freeze_steps > 0 and schedule.warmup_steps > 0:
        factor *= min(1.0, (step - freeze_steps + 1) / schedule.warmup_steps)
    return factor


def drop_frozen_grads(opt: torch.optim.Optimizer, step: int) -> None:
    """Clear the gradients of the groups still frozen at ``step`` (before clipping and stepping).

    Their parameters then take no update, no weight decay and no Adam moments, and do not count
    in the clipped gradient norm: a frozen warm-up trains the rest as if they were constants.
    """
    for group in opt.param_groups:
        if step < group.get("freeze_steps", 0):
            for prm in group["params"]:
                prm.grad = None


def modality_masks(
    rgb_present: Tensor, event_present: Tensor, p_rgb: float, p_event: float, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Modality dropout on top of the data's presence flags; never drops a sample's last input.

    Args:
        rgb_present: (B,) bool from the data.
        event_present: (B,) bool from the data.
        p_rgb: Probability of dropping RGB.
        p_event: Probability of dropping events (exclusive with dropping RGB).
        gen: CPU generator (seeded per step, so runs and resumes draw the same masks).

    Returns:
        ``(rgb_on, event_on)`` (B,) bool on the input's device.
    """
    u = torch.rand(rgb_present.shape[0], generator=gen).to(rgb_present.device)
    drop_rgb = (u < p_rgb) & event_present
    drop_ev = (u >= p_rgb) & (u < p_rgb + p_event) & rgb_present
    return rgb_present & ~drop_rgb, event_present & ~drop_ev
