"""ONNX export of the CMFA inference graph (fused, event-only or RGB-only).

The exported graph takes the crops (and, for warm start, the previous landmarks) and returns
``landmarks`` (B, N, 2) in [0, 1] crop coordinates and ``confidence`` (B, N); the batch axis is
dynamic. Absent modalities are folded into constants (the missing-modality attention output), so
the event-only graph has no RGB backbone at all. Uses torch's TorchScript-based exporter, which
needs the ``onnx`` package (not ``onnxscript``); opset 17 (``GridSample`` needs >= 16).
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from facealign_ros.model.cmfa import CMFA

Mode = Literal["fused", "event", "rgb"]
MODES: tuple[Mode, ...] = ("fused", "event", "rgb")


class InferenceGraph(nn.Module):
    """Positional-tensor wrapper of :class:`CMFA` for tracing.

    Args:
        model: The network (used as is; pass a copy if it must not change mode).
        mode: Which inputs exist: ``"fused"`` (rgb, event), ``"event"`` or ``"rgb"``.
        stages: Stages to run (None = all).
        warm: Whether the graph takes ``init_landmarks`` as its last input.
    """

    def __init__(self, model: CMFA, mode: Mode, stages: int | None = None, warm: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.model = model
        self.mode = mode
        self.stages = stages
        self.warm = warm

    def input_names(self) -> list[str]:
        """Graph input names in order."""
        names = {"fused": ["rgb", "event"], "event": ["event"], "rgb": ["rgb"]}[self.mode]
        return [*names, "init_landmarks"] if self.warm else names

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs as named by :meth:`input_names`; returns ``(landmarks, confidence)``."""
        named = dict(zip(self.input_names(), inputs, strict=True))
        out = self.model(
            named.get("rgb"),
            named.get("event"),
            init_landmarks=named.get("init_landmarks"),
            stages=self.stages,
        )
        return out["landmarks"], out["confidence"]


def example_inputs(model: CMFA, mode: Mode, warm: bool = False, batch: int = 1) -> list[Tensor]:
    """Seeded random inputs for ``mode``, in :meth:`InferenceGraph.input_names` order."""
    cfg = model.config
    s = cfg.input_size
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(batch, cfg.rgb_channels, s, s, generator=gen)
    event = torch.rand(batch, cfg.event_channels, s, s, generator=gen)
    tensors = {"fused": [rgb, event], "event": [event], "rgb": [rgb]}[mode]
    if warm:
        tensors.append(model.mean_shape.detach().cpu().unsqueeze(0).expand(batch, -1, -1).clone())
    return tensors


def export_onnx(
    model: CMFA,
    path: str | os.PathLike[str],
    mode: Mode = "fused",
    *,
    stages: int | None = None,
    warm: bool = False,
    opset: int = 17,
) -> Path:
    """Export the inference graph to ONNX.

    The model is copied to the CPU in eval mode first, so ``model`` itself is not changed
    (tracing a module in training mode would update BatchNorm statistics).

    Args:
        model: The network.
        path: Output ``.onnx`` file.
        mode: ``"fused"``, ``"event"`` (event-only) or ``"rgb"`` (RGB-only).
        stages: Stages to run (None = all; with ``warm`` the finest ones).
        warm: Add an ``init_landmarks`` (B, N, 2) input for warm start.
        opset: ONNX opset (>= 16).

    Returns:
        The written path.
    """
    graph = InferenceGraph(copy.deepcopy(model).cpu().eval(), mode, stages, warm).eval()
    inputs = example_inputs(model, mode, warm)
    names = graph.input_names()
    dyn = {n: {0: "batch"} for n in [*names, "landmarks", "confidence"]}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # legacy exporter notice
        torch.onnx.export(
            graph,
            tuple(inputs),
            str(target),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=["landmarks", "confidence"],
            dynamic_axes=dyn,
        )
    return target
