"""Traced inference graphs of a CMFA network, one per input signature.

Eager PyTorch spends a large share of a lite forward in Python (about 200 module calls per
crop); a traced and frozen TorchScript graph runs the same operators without it: on this
project's 2-core CPU 1.27-1.38x faster, with identical outputs (``python -m
training.bench.inference``, docs/BENCHMARKS.md).

A graph is traced on first use of each signature (branch: RGB backbone, event backbone, or the
decoder with a given set of present modalities, stages and warm/cold start), which costs a few
hundred milliseconds once; only batches of one crop are traced (see :data:`MAX_TRACED_BATCH`).
Anything that fails to trace (an operator TorchScript does not know, a torch without
``torch.jit``) falls back to the eager module for that signature, with one warning; results
never depend on which path ran. ``torch.jit`` is deprecated in recent torch releases (the
pinned 2.13 has it); the fallback keeps this working when it goes.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from facealign_ros.model.cmfa import CMFA

_log = logging.getLogger(__name__)

MAX_TRACED_BATCH = 1
"""Larger batches (the face search's candidate crops) run eagerly: their time is compute, and
every traced graph costs memory."""

DecodeKey = tuple[bool, bool, tuple[int, ...], bool]
"""(RGB present, events present, stage indices, warm start)."""


class _Encode(nn.Module):
    """One backbone branch of ``CMFA`` (``encode_rgb`` or ``encode_event``)."""

    def __init__(self, model: CMFA, branch: str) -> None:
        super().__init__()
        self.model = model
        self.branch = branch

    def forward(self, x: Tensor) -> Tensor:
        out = self.model.encode_rgb(x) if self.branch == "rgb" else self.model.encode_event(x)
        assert out is not None
        return out


class _Decode(nn.Module):
    """``CMFA.decode`` for one signature; inputs are the present tensors in a fixed order."""

    def __init__(self, model: CMFA, key: DecodeKey) -> None:
        super().__init__()
        self.model = model
        self.has_rgb, self.has_event, idx, self.warm = key
        self.stages = len(idx)

    def forward(self, *tensors: Tensor) -> tuple[Tensor, Tensor]:
        it = iter(tensors)
        rgb_map = next(it) if self.has_rgb else None
        ev_map = next(it) if self.has_event else None
        init = next(it) if self.warm else None
        out = self.model.decode(rgb_map, ev_map, init_landmarks=init, stages=self.stages)
        return out["landmarks"], out["confidence"]


class TracedGraphs:
    """Inference entry points of ``model`` (eval mode, no grad) through traced graphs.

    Args:
        model: the network, in eval mode, on its final device.
        enabled: trace; False runs the eager modules (same results).
    """

    def __init__(self, model: CMFA, enabled: bool = True) -> None:
        self.model = model
        self.enabled = enabled and hasattr(torch, "jit")
        self._graphs: dict[tuple, Callable[..., Any]] = {}  # (branch, batch, device, ...) ->
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget the graphs (after the model moved to another device)."""
        with self._lock:
            self._graphs.clear()

    def _graph(
        self, key: tuple, module: nn.Module, inputs: tuple[Tensor, ...]
    ) -> Callable[..., Any]:
        with self._lock:
            fn = self._graphs.get(key)
            if fn is not None:
                return fn
            fn = module
            if self.enabled and inputs[0].shape[0] <= MAX_TRACED_BATCH:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        traced = torch.jit.trace(module.eval(), inputs, check_trace=False)
                        fn = torch.jit.freeze(traced)
                except Exception as exc:  # noqa: BLE001 - any tracing failure: stay eager
                    _log.warning("cannot trace %s (%r): running it eagerly", key, exc)
                    fn = module
            self._graphs[key] = fn
            return fn

    def encode_rgb(self, rgb: Tensor) -> Tensor:
        """(B, rgb_channels, S, S) in [0, 1] -> RGB feature map (B, feature_dim, S/4, S/4)."""
        key = ("rgb", rgb.shape[0], rgb.device)
        return self._graph(key, _Encode(self.model, "rgb"), (rgb,))(rgb)

    def encode_event(self, event: Tensor) -> Tensor:
        """(B, event_channels, S, S) -> event feature map (B, feature_dim, S/4, S/4)."""
        key = ("event", event.shape[0], event.device)
        return self._graph(key, _Encode(self.model, "event"), (event,))(event)

    def decode(
        self,
        rgb_map: Tensor | None,
        ev_map: Tensor | None,
        init_landmarks: Tensor | None,
        stages: int | None,
    ) -> tuple[Tensor, Tensor]:
        """Landmarks ``(B, N, 2)`` and confidence ``(B, N)`` from feature maps (``CMFA.decode``)."""
        present = [t for t in (rgb_map, ev_map) if t is not None]
        if not present:
            raise ValueError("CMFA needs at least one of rgb and event")
        warm = init_landmarks is not None
        idx = tuple(self.model.stage_indices(stages, warm))
        key: DecodeKey = (rgb_map is not None, ev_map is not None, idx, warm)
        inputs = tuple(present) + ((init_landmarks,) if init_landmarks is not None else ())
        graph_key = ("decode", present[0].shape[0], present[0].device, key)
        return self._graph(graph_key, _Decode(self.model, key), inputs)(*inputs)
