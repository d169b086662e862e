"""The network as the pipeline uses it: checkpoint + ``InputSpec`` + landmark scheme, on crops.

:func:`load_model` reads a checkpoint written by :func:`~facealign_ros.model.save_checkpoint`
whose metadata carries the :class:`~facealign_ros.face.preprocess.InputSpec` under
``preprocessing`` (the one preprocessing path training used). :meth:`ModelRunner.align` builds
the inputs of a batch of crops with :func:`~facealign_ros.face.preprocess.event_input` /
:func:`~facealign_ros.face.preprocess.rgb_input`, runs the network and maps the landmarks back to
sensor pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from facealign_ros.face.crop import (
    Box,
    crop_affine,
    from_normalized,
    invert_affine,
    to_normalized,
    transform_points,
)
from facealign_ros.face.landmarks import LandmarkScheme, get_scheme, to_rep155
from facealign_ros.face.preprocess import InputSpec, event_input, rgb_input


class ModelLoadError(RuntimeError):
    """The model cannot be loaded (missing or bad checkpoint, inconsistent metadata)."""


def spec_from_preprocessing(pre: dict[str, Any], input_size: int, event_channels: int) -> InputSpec:
    """The ``InputSpec`` stored in checkpoint metadata (``preprocessing`` or its ``input_spec``).

    Raises:
        ModelLoadError: no spec, or one that does not fit the network's input size/channels.
    """
    known = {f.name for f in fields(InputSpec)}
    raw = pre.get("input_spec", pre)
    if not isinstance(raw, dict) or not raw or not set(raw) <= known:
        raise ModelLoadError(
            "checkpoint metadata 'preprocessing' holds no InputSpec (expected keys "
            f"{sorted(known)}, got {sorted(raw) if isinstance(raw, dict) else type(raw)})"
        )
    try:
        spec = InputSpec.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"invalid InputSpec in checkpoint metadata: {exc}") from exc
    if spec.size != input_size or spec.event_channels != event_channels:
        raise ModelLoadError(
            f"InputSpec (size {spec.size}, {spec.event_channels} event channels) does not fit the "
            f"network (size {input_size}, {event_channels} event channels)"
        )
    return spec


@dataclass(frozen=True)
class Aligned:
    """Landmarks of a batch of crops, in sensor pixels.

    Attributes:
        points: ``(B, N, 2)`` model-scheme landmarks, sensor pixels.
        confidence: ``(B, N)`` in ``[0, 1]``.
        affines: ``(B, 2, 3)`` sensor -> crop maps used.
    """

    points: np.ndarray
    confidence: np.ndarray
    affines: np.ndarray


class ModelRunner:
    """A loaded aligner with its input spec and landmark scheme.

    Args:
        aligner: a :class:`~facealign_ros.model.FaceAligner`.
        spec: the input specification the weights were trained with.
        scheme: the landmark scheme of the network's outputs.
    """

    def __init__(self, aligner: Any, spec: InputSpec, scheme: LandmarkScheme) -> None:
        self.aligner = aligner
        self.spec = spec
        self.scheme = scheme
        self._rgb_cache: tuple[Any, Box, Any] | None = None  # (frame key, box, features)

    @property
    def device(self) -> str:
        """Device the network runs on."""
        return str(self.aligner.device)

    @property
    def num_stages(self) -> int:
        """Coarse-to-fine stages of the network."""
        return int(self.aligner.config.num_stages)

    def align(
        self,
        boxes: list[Box],
        events: np.ndarray | None,
        rgb: np.ndarray | None,
        size: tuple[int, int],
        t_end_ns: int,
        init_points: np.ndarray | None = None,
        stages: int | None = None,
        rgb_key: Any = None,
    ) -> Aligned:
        """Run the network on the crops of ``boxes``.

        Args:
            boxes: crop boxes, sensor pixels.
            events: event window (ROS-time ``t``), or None for RGB-only.
            rgb: ``(H, W, 3)`` uint8 frame registered to the sensor, or None for events-only.
            size: sensor ``(width, height)``.
            t_end_ns: end of the event window.
            init_points: ``(N, 2)`` sensor-pixel landmarks for a warm start (one box only).
            stages: stages to run (None: all).
            rgb_key: identity of ``rgb`` (e.g. its stamp): the RGB features of one box are kept,
                and reused while the same frame comes with the same box. None: no reuse.
        """
        S = self.spec.size
        As = np.stack([crop_affine(b, S) for b in boxes])
        ev = None
        if events is not None:
            ev = np.stack(
                [event_input(events, A, self.spec, size[0], size[1], t_end_ns) for A in As]
            )
        im, feats = None, None
        reusable = rgb_key is not None and len(boxes) == 1 and ev is not None
        if rgb is not None:
            cache = self._rgb_cache
            if reusable and cache is not None and cache[:2] == (rgb_key, boxes[0]):
                feats = cache[2]
            else:
                im = np.stack([rgb_input(rgb, A, self.spec) for A in As])
                if reusable:
                    feats = self.aligner.rgb_features(im)
                    self._rgb_cache = (rgb_key, boxes[0], feats)
                    im = None
        init = None
        if init_points is not None:
            init = np.stack([to_normalized(transform_points(init_points, A), S) for A in As])
            init = init.astype(np.float32)
        out = self.aligner.predict(ev, im, init_landmarks=init, stages=stages, rgb_features=feats)
        pts = np.stack(
            [
                transform_points(from_normalized(out.landmarks[i], S), invert_affine(As[i]))
                for i in range(len(boxes))
            ]
        )
        return Aligned(pts, np.asarray(out.confidence, np.float64), As)

    def to_rep155(
        self, points: np.ndarray, confidence: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Model-scheme ``(N, 2)`` + ``(N,)`` -> REP-155 ``(70, 2)`` + ``(70,)``."""
        both = np.concatenate([points, confidence[:, None]], axis=1)
        r = to_rep155(both, self.scheme)
        return r[:, :2], r[:, 2]

    def warm_up(self, warm_stages: int = 1) -> None:
        """Prepare the per-frame inference graphs now (node configure) rather than live."""
        self.aligner.warm_up(warm_stages)

    def forget(self) -> None:
        """Drop the kept RGB features (stamps may repeat after a reset)."""
        self._rgb_cache = None

    def release(self) -> None:
        """Move the network off the GPU and free cached memory."""
        self._rgb_cache = None
        self.aligner.release()


def load_model(path: str | os.PathLike[str], device: str = "auto", threads: int = 0) -> ModelRunner:
    """Load a checkpoint for the pipeline.

    Raises:
        ModelLoadError: missing file, unreadable or inconsistent checkpoint (message says why).
    """
    import torch  # heavy: imported only when a model is loaded

    from facealign_ros.model import CheckpointError, FaceAligner

    if threads > 0:
        torch.set_num_threads(int(threads))
    if not os.path.isfile(path):
        raise ModelLoadError(f"model checkpoint {str(path)!r} does not exist")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {device!r}: CUDA is not available (torch {torch.__version__}, "
            f"{'built without CUDA' if torch.version.cuda is None else 'no usable GPU'}); "
            "use device 'auto' or 'cpu'"
        )
    try:
        aligner = FaceAligner.from_checkpoint(path, device=device)
    except CheckpointError as exc:
        raise ModelLoadError(str(exc)) from exc
    except (RuntimeError, ValueError, OSError) as exc:  # e.g. an invalid CUDA device index
        raise ModelLoadError(f"cannot load {str(path)!r} on {device!r}: {exc}") from exc
    meta = aligner.meta
    cfg = aligner.config
    try:
        scheme = get_scheme(meta.landmark_scheme) if meta else get_scheme(cfg.num_points)
    except ValueError as exc:
        raise ModelLoadError(f"{path}: {exc}") from exc
    if scheme.n_points != cfg.num_points:
        raise ModelLoadError(f"{path}: scheme {scheme.name} does not have {cfg.num_points} points")
    pre = dict(meta.preprocessing) if meta else {}
    try:
        spec = spec_from_preprocessing(pre, cfg.input_size, cfg.event_channels)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc}") from exc
    return ModelRunner(aligner, spec, scheme)
