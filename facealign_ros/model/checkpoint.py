"""CMFA checkpoints: safetensors weights + JSON metadata in the same file; never pickle.

The safetensors header's string metadata holds ``format`` (``facealign_ros.cmfa``),
``format_version`` and ``meta``: a JSON object with the network config, landmark scheme, event
representations, input size, mean shape, the command that trained the weights, measured metrics,
preprocessing settings and the creation time. Loading validates all of it and the tensor names and
shapes before building the model, and every failure raises :class:`CheckpointError` naming the file
and the problem. Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from facealign_ros.model.cmfa import CMFA
from facealign_ros.model.config import CMFAConfig

FORMAT = "facealign_ros.cmfa"
FORMAT_VERSION = 1
_REQUIRED = ("config", "landmark_scheme", "representations", "input_size", "mean_shape")


class CheckpointError(Exception):
    """A checkpoint cannot be read or does not fit; names the file and the problem.

    Attributes:
        path: The checkpoint file.
        problem: What is wrong, in words.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"checkpoint {self.path}: {problem}")


@dataclass(frozen=True)
class CheckpointMeta:
    """Metadata stored beside the weights.

    Attributes:
        config: Network configuration.
        landmark_scheme: Name of the landmark order, e.g. ``"ibug68"`` or ``"wflw98"``.
        representations: Event representation names in channel order, e.g. ``("voxel_grid",)``.
        input_size: Crop side in pixels (equals ``config.input_size``).
        mean_shape: (N, 2) start shape in [0, 1] crop coordinates.
        training_command: Exact command line that produced the weights.
        metrics: Measured numbers, e.g. ``{"nme": 0.041}``.
        preprocessing: Free-form JSON settings (event window, normalisation, crop scale, ...).
        created: ISO-8601 UTC creation time.
        lineage: The runs these weights were fine-tuned from, oldest first: one
            ``{"training_command", "created", "sha256"}`` record per earlier checkpoint (its
            command, creation time and the SHA-256 of its file), so ``training_command`` plus
            ``lineage`` is the whole recipe (with the data, and any ``--init-event-encoder``
            file, the commands name). Empty for weights trained from scratch.
    """

    config: CMFAConfig
    landmark_scheme: str
    representations: tuple[str, ...]
    input_size: int
    mean_shape: tuple[tuple[float, float], ...]
    training_command: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    lineage: tuple[Mapping[str, str], ...] = ()

    def to_json(self) -> str:
        """Serialise to a JSON string."""
        return json.dumps(
            {
                "config": self.config.to_dict(),
                "landmark_scheme": self.landmark_scheme,
                "representations": list(self.representations),
                "input_size": self.input_size,
                "mean_shape": [list(p) for p in self.mean_shape],
                "training_command": self.training_command,
                "metrics": dict(self.metrics),
                "preprocessing": dict(self.preprocessing),
                "created": self.created,
                **({"lineage": [dict(r) for r in self.lineage]} if self.lineage else {}),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, path: str | os.PathLike[str]) -> CheckpointMeta:
        """Parse and validate; ``path`` only names the file in errors.

        Raises:
            CheckpointError: Invalid JSON, missing or unknown keys, inconsistent values.
        """
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(path, f"metadata is not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise CheckpointError(path, "metadata must be a JSON object")
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise CheckpointError(path, f"metadata lacks required keys {missing}")
        known = set(_REQUIRED) | {"training_command", "metrics", "preprocessing", "created",
                                  "lineage"}  # fmt: skip
        unknown = sorted(set(raw) - known)
        if unknown:
            raise CheckpointError(path, f"metadata has unknown keys {unknown}")
        try:
            config = CMFAConfig.from_dict(raw["config"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(path, f"bad config in metadata: {exc}") from exc
        try:
            shape = np.asarray(raw["mean_shape"], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(path, f"mean_shape is not an array of numbers ({exc})") from exc
        if shape.shape != (config.num_points, 2):
            raise CheckpointError(
                path, f"mean_shape is {shape.shape}, config expects ({config.num_points}, 2)"
            )
        lineage = raw.get("lineage", [])
        if not isinstance(lineage, list) or not all(isinstance(r, dict) for r in lineage):
            raise CheckpointError(path, "lineage must be a list of JSON objects")
        if raw["input_size"] != config.input_size:
            raise CheckpointError(
                path, f"input_size {raw['input_size']} != config.input_size {config.input_size}"
            )
        if not np.isfinite(shape).all():
            raise CheckpointError(path, "mean_shape holds non-finite values")
        for key, kind, word in (("representations", list, "array"), ("metrics", dict, "object"),
                                ("preprocessing", dict, "object")):  # fmt: skip
            if key in raw and not isinstance(raw[key], kind):
                raise CheckpointError(path, f"{key} must be a JSON {word}")
        try:
            return cls(
                config=config,
                landmark_scheme=str(raw["landmark_scheme"]),
                representations=tuple(str(r) for r in raw["representations"]),
                input_size=int(raw["input_size"]),
                mean_shape=tuple((float(x), float(y)) for x, y in shape),
                training_command=str(raw.get("training_command", "")),
                metrics={str(k): float(v) for k, v in raw.get("metrics", {}).items()},
                preprocessing=dict(raw.get("preprocessing", {})),
                created=str(raw.get("created", "")),
                lineage=tuple({str(k): str(v) for k, v in r.items()} for r in lineage),
            )
        except (TypeError, ValueError) as exc:  # e.g. a metric that is not a number
            raise CheckpointError(path, f"bad metadata value ({exc})") from exc


def save_checkpoint(
    path: str | os.PathLike[str],
    model: CMFA,
    *,
    landmark_scheme: str,
    representations: Sequence[str],
    training_command: str = "",
    metrics: Mapping[str, float] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    half: bool = False,
    lineage: Sequence[Mapping[str, str]] = (),
) -> CheckpointMeta:
    """Write ``model`` and its metadata to ``path`` atomically.

    Args:
        path: Target ``.safetensors`` file (parent directories are created).
        model: The network; its config and mean-shape buffer go into the metadata.
        landmark_scheme: Landmark order name.
        representations: Event representation names in channel order.
        training_command: Command line that produced the weights.
        metrics: Measured numbers to record.
        preprocessing: JSON-able preprocessing settings.
        half: Store floating-point tensors as float16 (halves the file; loads as float32).
        lineage: Earlier runs these weights were fine-tuned from (see :class:`CheckpointMeta`);
            :func:`lineage_of` makes it from the starting checkpoint.

    Returns:
        The metadata written.
    """
    target = Path(path)
    meta = CheckpointMeta(
        config=model.config,
        landmark_scheme=landmark_scheme,
        representations=tuple(representations),
        input_size=model.config.input_size,
        mean_shape=tuple((float(x), float(y)) for x, y in model.mean_shape.tolist()),
        training_command=training_command,
        metrics=dict(metrics or {}),
        preprocessing=dict(preprocessing or {}),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        lineage=tuple(dict(r) for r in lineage),
    )
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if half and t.is_floating_point() and name != "mean_shape":
            t = t.half()
        tensors[name] = t.contiguous().clone()
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "meta": meta.to_json()}
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return meta


def _open(path: Path) -> Any:
    if not path.exists():
        raise CheckpointError(path, "file not found")
    if not path.is_file():
        raise CheckpointError(path, "not a regular file")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise CheckpointError(path, f"not a readable safetensors file ({exc})") from exc


def lineage_of(path: str | os.PathLike[str]) -> tuple[dict[str, str], ...]:
    """The lineage of weights fine-tuned from the checkpoint at ``path``.

    Its own lineage plus a record of it (training command, creation time, SHA-256 of the file).

    Raises:
        CheckpointError: Missing/corrupt file or invalid metadata.
    """
    meta = read_metadata(path)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    own = {"training_command": meta.training_command, "created": meta.created, "sha256": digest}
    return (*(dict(r) for r in meta.lineage), own)


def read_metadata(path: str | os.PathLike[str]) -> CheckpointMeta:
    """Read and validate only the metadata (cheap: the header, not the weights).

    Raises:
        CheckpointError: Missing/corrupt file, foreign or newer format, invalid metadata.
    """
    p = Path(path)
    with _open(p) as f:
        return _meta_of(p, f.metadata())


def _meta_of(path: Path, header: Mapping[str, str] | None) -> CheckpointMeta:
    if not header or "meta" not in header:
        raise CheckpointError(path, "no facealign metadata (not a facealign_ros CMFA checkpoint?)")
    if header.get("format") != FORMAT:
        raise CheckpointError(path, f"format is {header.get('format')!r}, expected {FORMAT!r}")
    try:
        version = int(header.get("format_version", ""))
    except ValueError as exc:
        raise CheckpointError(path, "format_version is not an integer") from exc
    if version > FORMAT_VERSION:
        raise CheckpointError(
            path, f"format_version {version} is newer than this reader ({FORMAT_VERSION})"
        )
    return CheckpointMeta.from_json(header["meta"], path)


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[CMFA, CheckpointMeta]:
    """Build the model described by a checkpoint and load its weights (eval mode).

    Args:
        path: Checkpoint written by :func:`save_checkpoint`.
        device: Where to put the model.

    Returns:
        ``(model, metadata)``.

    Raises:
        CheckpointError: Missing or corrupt file, wrong or missing metadata, unknown config keys,
            missing/unexpected tensors or shape mismatches.
    """
    p = Path(path)
    with _open(p) as f:
        meta = _meta_of(p, f.metadata())
        model = CMFA(meta.config, mean_shape=np.asarray(meta.mean_shape, dtype=np.float32))
        expected = model.state_dict()
        names = set(f.keys())
        missing = sorted(set(expected) - names)
        unexpected = sorted(names - set(expected))
        if missing or unexpected:
            raise CheckpointError(
                p,
                f"tensor names do not match the config: missing {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                f"{' ...' if len(unexpected) > 5 else ''}",
            )
        state = {}
        for name, ref in expected.items():
            shape = tuple(f.get_slice(name).get_shape())
            if shape != tuple(ref.shape):
                raise CheckpointError(
                    p, f"tensor {name!r} has shape {shape}, the config expects {tuple(ref.shape)}"
                )
            try:
                state[name] = f.get_tensor(name).to(ref.dtype)
            except Exception as exc:
                raise CheckpointError(p, f"cannot read tensor {name!r} ({exc})") from exc
            if state[name].is_floating_point() and not bool(torch.isfinite(state[name]).all()):
                raise CheckpointError(
                    p, f"tensor {name!r} holds NaN or infinite values (a diverged training run?)"
                )
    model.load_state_dict(state)
    return model.to(device).eval(), meta
