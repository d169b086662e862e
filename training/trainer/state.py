"""Training checkpoints without pickle: a directory per step, written atomically.

``<out_dir>/checkpoints/step_0000500/`` holds

- ``model.safetensors``: the network through :func:`facealign_ros.model.save_checkpoint` (a
  normal model checkpoint that ``facealign eval`` and the node can load), and
- ``state.safetensors``: optimizer tensors (``optimizer/<param>/<key>``) and the torch RNG
  state as tensors; everything else (optimizer hyper-parameters, scheduler and GradScaler
  state, step, epoch, sampler position, python/numpy RNG states, config) as JSON in the
  safetensors header.

The directory is filled under a temporary name and renamed into place, then ``latest``
(a one-line text file) is replaced atomically, so a kill at any moment leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

STATE_FORMAT = "facealign_ros.train_state"
STATE_VERSION = 1
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"


class ResumeError(Exception):
    """A training checkpoint cannot be resumed; names the path and the problem."""


@dataclass(frozen=True)
class TrainingState:
    """What a training checkpoint restores besides the weights.

    Attributes:
        step: Optimizer steps done.
        meta: The JSON part (optimizer groups, scheduler, scaler, RNG, sampler, config).
        tensors: The tensor part (optimizer moments, torch RNG states).
    """

    step: int
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def optimizer_to_flat(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into tensors and JSON (no pickle needed).

    Returns:
        ``(tensors, meta)``: tensors named ``optimizer/<param id>/<key>``; ``meta`` holds the
        param groups and non-tensor per-parameter values.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{pid}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
        for g in state["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict:
    """Inverse of :func:`optimizer_to_flat`: a ``state_dict`` for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entries in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entries)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Python, numpy and torch (CPU and CUDA) global RNG states as tensors + JSON."""
    version, words, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 (global state on purpose)
    np_json = {k: v for k, v in np_state.items() if k != "state"}
    np_json["state"] = {
        "key": np_state["state"]["key"].tolist(),
        "pos": int(np_state["state"]["pos"]),
    }
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    return tensors, {"python": [version, list(words), gauss], "numpy": np_json}


def set_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only where devices exist)."""
    version, words, gauss = meta["python"]
    random.setstate((version, tuple(words), gauss))
    np_meta = dict(meta["numpy"])
    key = np.asarray(np_meta["state"]["key"], dtype=np.uint32)
    np_meta["state"] = {"key": key, "pos": int(np_meta["state"]["pos"])}
    np.random.set_state(np_meta)  # noqa: NPY002
    torch.set_rng_state(tensors["rng/torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda/")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint of ``step``."""
    return f"step_{step:07d}"


def save_training_checkpoint(
    root: Path,
    step: int,
    write_model: Callable[[Path], Any],
    tensors: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    keep: int = 3,
) -> Path:
    """Write ``root/step_XXXXXXX/`` atomically and point ``root/latest`` at it.

    Args:
        root: Checkpoint folder (created).
        step: Optimizer steps done.
        write_model: Writes the model file to the given path (e.g. via ``save_checkpoint``).
        tensors: Tensor part of the training state.
        meta: JSON part of the training state.
        keep: Most recent checkpoints to keep (older ones are deleted).

    Returns:
        The checkpoint directory.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    umask = os.umask(0)
    os.umask(umask)
    try:
        write_model(tmp / MODEL_FILE)
        header = {
            "format": STATE_FORMAT,
            "format_version": str(STATE_VERSION),
            "meta": json.dumps({**meta, "step": step}),
        }
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp / STATE_FILE, header)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~umask)
        if final.exists():  # re-saving a step (e.g. the end of a resumed, finished run)
            trash = Path(tempfile.mkdtemp(prefix=".old.", dir=root))
            os.replace(final, trash / final.name)
            shutil.rmtree(trash)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)
    fd, latest_tmp = tempfile.mkstemp(prefix=".latest.", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(final.name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(latest_tmp, root / "latest")
    _fsync_dir(root)
    old = sorted(p for p in root.glob("step_*") if p.is_dir())
    for p in old[: max(0, len(old) - keep)]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint named by ``root/latest`` (or the newest ``step_*``), or None."""
    pointer = root / "latest"
    if pointer.is_file():
        cand = root / pointer.read_text(encoding="utf-8").strip()
        if (cand / STATE_FILE).is_file() and (cand / MODEL_FILE).is_file():
            return cand
    found = sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file())
    return found[-1] if found else None


def load_training_state(ckpt: Path) -> TrainingState:
    """Read ``state.safetensors`` of a checkpoint directory.

    Raises:
        ResumeError: Missing, foreign, newer or corrupt state file.
    """
    path = Path(ckpt) / STATE_FILE
    if not path.is_file():
        raise ResumeError(f"{ckpt}: no {STATE_FILE} (not a training checkpoint directory)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    except Exception as exc:
        raise ResumeError(f"{path}: not a readable safetensors file ({exc})") from exc
    if header.get("format") != STATE_FORMAT:
        raise ResumeError(f"{path}: format {header.get('format')!r}, expected {STATE_FORMAT!r}")
    if int(header.get("format_version", "0")) > STATE_VERSION:
        raise ResumeError(f"{path}: format_version is newer than this reader")
    try:
        meta = json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ResumeError(f"{path}: bad training-state metadata ({exc})") from exc
    return TrainingState(step=int(meta["step"]), meta=meta, tensors=tensors)


def resume_path(mode: str, ckpt_dir: Path) -> Path | None:
    """The checkpoint a run resumes from (None: start fresh).

    ``never`` -> None; ``auto`` -> the latest in ``ckpt_dir`` (None if none); a checkpoint
    directory -> itself; a run's checkpoint folder -> its latest checkpoint.
    """
    if mode == "never":
        return None
    if mode == "auto":
        return latest_checkpoint(ckpt_dir)
    path = Path(mode)
    if path.is_dir() and not (path / MODEL_FILE).is_file():
        return latest_checkpoint(path) or path  # a run's checkpoint folder
    return path


RESTORED_OPTIM = ("lr", "weight_decay", "betas", "eps", "lr_scales")
"""Optim settings a resume takes from the optimizer state, not from the config."""


def refuse_changed_optim(
    ckpt: Path, state: TrainingState, optim_now: Mapping[str, Any], fresh_start: str
) -> None:
    """Refuse a resume whose config changed an optim setting the optimizer state restores.

    A changed LR, weight decay, betas, eps or LR scale would be silently replaced by the
    checkpoint's while the run's config.yaml recorded the new value.

    Args:
        ckpt: the checkpoint directory (named in the error).
        state: its training state (its ``config`` holds the optim settings it ran with).
        optim_now: this run's ``optim`` section as a plain dict.
        fresh_start: how to start anew instead, appended to the error.

    Raises:
        ResumeError: naming the changed settings and their checkpoint values.
    """
    saved = state.meta.get("config", {}).get("optim", {})
    changed = sorted(k for k in RESTORED_OPTIM if k in saved and saved[k] != optim_now[k])
    if changed:
        was = ", ".join(f"{k}={saved[k]}" for k in changed)
        raise ResumeError(
            f"{ckpt} was trained with optim {was}; a resume restores them: keep them, or "
            f"{fresh_start}"
        )


def restore_run_state(
    ckpt: Path, state: TrainingState, model: torch.nn.Module, opt: Any, sched: Any, scaler: Any
) -> None:
    """Load a checkpoint's weights, optimizer, scheduler, grad scaler and global RNG states."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(Path(ckpt) / MODEL_FILE)), strict=True)
    opt.load_state_dict(optimizer_from_flat(state.tensors, state.meta["optimizer"]))
    sched.load_state_dict(state.meta["scheduler"])
    if state.meta.get("scaler"):
        scaler.load_state_dict(state.meta["scaler"])
    set_rng_state(state.tensors, state.meta["rng"])
