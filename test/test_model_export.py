"""ONNX export parity with onnxruntime (fused, event-only, warm start)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facealign_ros.model.cmfa import CMFA
from facealign_ros.model.config import lite_config
from facealign_ros.model.export import InferenceGraph, example_inputs, export_onnx

pytest.importorskip("onnx")  # the exporter needs it
ort = pytest.importorskip("onnxruntime")
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model() -> CMFA:
    torch.manual_seed(0)
    return CMFA(lite_config(num_points=20, event_channels=5)).train()  # export must not care


@pytest.mark.parametrize(
    ("mode", "warm", "stages"),
    [("fused", False, None), ("event", False, None), ("fused", True, 1), ("rgb", False, 1)],
)
def test_onnx_parity(
    model: CMFA, tmp_path: Path, mode: str, warm: bool, stages: int | None
) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = export_onnx(model, tmp_path / f"{mode}.onnx", mode, warm=warm, stages=stages)  # type: ignore[arg-type]
    assert model.training  # the caller's model keeps its mode and BatchNorm statistics
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    ref_graph = InferenceGraph(model, mode, stages, warm)  # type: ignore[arg-type]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ref_graph.input_names()
    model.eval()
    try:
        inputs = example_inputs(model, mode, warm, batch=3)  # type: ignore[arg-type]
        if warm:
            inputs[-1] = inputs[-1] + 0.02 * torch.randn_like(inputs[-1])
        with torch.no_grad():
            ref = ref_graph(*inputs)
    finally:
        model.train()
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
    assert got[0].shape == (3, 20, 2) and got[1].shape == (3, 20)
    np.testing.assert_allclose(got[0], ref[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(got[1], ref[1].numpy(), atol=1e-5)


def test_bad_mode(model: CMFA) -> None:
    with pytest.raises(ValueError, match="mode"):
        InferenceGraph(model, "thermal")  # type: ignore[arg-type]
