"""Checkpoints: round trip, half precision, metadata, and each error case."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from facealign_ros.model.checkpoint import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from facealign_ros.model.cmfa import CMFA
from facealign_ros.model.config import lite_config

torch.set_num_threads(2)
CFG = lite_config(num_points=12, backbone_width=8, feature_dim=16, d_model=32, ffn_dim=32)


@pytest.fixture(scope="module")
def model() -> CMFA:
    torch.manual_seed(0)
    shape = np.random.default_rng(0).uniform(0.2, 0.8, (12, 2)).astype(np.float32)
    net = CMFA(CFG, mean_shape=shape)
    with torch.no_grad():  # make BatchNorm statistics non-trivial
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.9, 1.1)
    return net.eval()


@pytest.fixture(scope="module")
def saved(model: CMFA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "sub" / "lite.safetensors"
    save_checkpoint(
        path,
        model,
        landmark_scheme="ibug68",
        representations=["voxel_grid"],
        training_command="facealign train --config x.yaml",
        metrics={"nme": 0.041},
        preprocessing={"window_us": 33000},
    )
    return path


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.rand(2, 3, 128, 128, generator=g), torch.rand(2, 3, 128, 128, generator=g)


def test_round_trip(model: CMFA, saved: Path) -> None:
    loaded, meta = load_checkpoint(saved)
    assert not loaded.training
    assert meta.config == CFG
    assert meta.landmark_scheme == "ibug68"
    assert meta.representations == ("voxel_grid",)
    assert meta.input_size == 128
    assert meta.training_command == "facealign train --config x.yaml"
    assert meta.metrics == {"nme": pytest.approx(0.041)}
    assert meta.preprocessing == {"window_us": 33000}
    np.testing.assert_allclose(np.asarray(meta.mean_shape), model.mean_shape.numpy(), atol=1e-7)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    with torch.no_grad():
        a, b = model(*_inputs()), loaded(*_inputs())
    torch.testing.assert_close(a["landmarks"], b["landmarks"], rtol=0, atol=0)
    assert read_metadata(saved) == meta
    assert not list(saved.parent.glob("*.tmp"))  # atomic write leaves no temporaries


def test_half_precision_is_smaller_and_close(model: CMFA, saved: Path, tmp_path: Path) -> None:
    path = tmp_path / "half.safetensors"
    save_checkpoint(path, model, landmark_scheme="ibug68", representations=["rep"], half=True)
    assert path.stat().st_size < 0.6 * saved.stat().st_size
    loaded, _ = load_checkpoint(path)
    assert loaded.query_pos.dtype == torch.float32
    with torch.no_grad():
        diff = (model(*_inputs())["landmarks"] - loaded(*_inputs())["landmarks"]).abs().max()
    assert diff < 5e-3


def _header(path: Path) -> dict[str, str]:
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        return json.loads(fh.read(n))["__metadata__"]


def _rewrite_meta(src: Path, dst: Path, edit: dict | None, header: dict | None = None) -> None:
    tensors = load_file(str(src))
    meta = _header(src)
    if header is not None:
        meta = header
    elif edit is not None:
        inner = json.loads(meta["meta"])
        for key, value in edit.items():
            if value is None:
                inner.pop(key, None)
            elif key == "config":
                inner["config"].update(value)
            else:
                inner[key] = value
        meta["meta"] = json.dumps(inner)
    save_file(tensors, str(dst), metadata=meta)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="file not found") as info:
        load_checkpoint(tmp_path / "nope.safetensors")
    assert info.value.path == tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty", "pickle"])
def test_corrupt_file(saved: Path, tmp_path: Path, kind: str) -> None:
    bad = tmp_path / "bad.safetensors"
    data = saved.read_bytes()
    bad.write_bytes(
        {
            "garbage": b"\x00\x01 not a checkpoint" * 10,
            "truncated": data[: len(data) // 2],
            "empty": b"",
            "pickle": b"\x80\x04\x95" + data[3:200],
        }[kind]
    )
    with pytest.raises(CheckpointError, match="bad.safetensors") as info:
        load_checkpoint(bad)
    assert "safetensors" in info.value.problem or "tensor" in info.value.problem


def test_foreign_safetensors_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no facealign metadata"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"format": "other", "format_version": "1", "meta": "{}"}, "format is 'other'"),
        ({"format": FORMAT, "format_version": "99", "meta": "{}"}, "newer than this reader"),
        ({"format": FORMAT, "format_version": "x", "meta": "{}"}, "not an integer"),
        ({"format": FORMAT, "format_version": "1", "meta": "{nope"}, "not valid JSON"),
        ({"format": FORMAT, "format_version": "1", "meta": "[]"}, "JSON object"),
    ],
)
def test_bad_header(saved: Path, tmp_path: Path, header: dict, message: str) -> None:
    path = tmp_path / "h.safetensors"
    _rewrite_meta(saved, path, None, header)
    with pytest.raises(CheckpointError, match=message):
        read_metadata(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"landmark_scheme": None}, "lacks required keys \\['landmark_scheme'\\]"),
        ({"surprise": 1}, "unknown keys \\['surprise'\\]"),
        ({"config": {"d_modle": 32}}, "unknown CMFAConfig keys"),
        ({"config": {"num_heads": 5}}, "divisible"),
        ({"mean_shape": [[0.5, 0.5]]}, "mean_shape is \\(1, 2\\)"),
        ({"input_size": 256}, "input_size 256"),
        ({"lineage": {"training_command": "x"}}, "lineage must be a list"),
        ({"metrics": {"nme": None}}, "bad metadata value"),
        ({"metrics": [1, 2]}, "metrics must be a JSON object"),
        ({"preprocessing": [1]}, "preprocessing must be a JSON object"),
        ({"representations": 5}, "representations must be a JSON array"),
        ({"mean_shape": [["a", 0.5]] * 12}, "mean_shape is not an array of numbers"),
        ({"mean_shape": [[0.5, 0.5]] * 11 + [[0.5]]}, "mean_shape is not an array of numbers"),
        ({"mean_shape": [[float("nan"), 0.5]] * 12}, "mean_shape holds non-finite"),
    ],
)
def test_bad_metadata(saved: Path, tmp_path: Path, edit: dict, message: str) -> None:
    path = tmp_path / "m.safetensors"
    _rewrite_meta(saved, path, edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_shape_mismatch(saved: Path, tmp_path: Path) -> None:
    # Same tensor names, different widths: the metadata says d=32, the tensors have d=64.
    path = tmp_path / "s.safetensors"
    save_checkpoint(path, CMFA(CFG.replace(d_model=64)), landmark_scheme="x", representations=[])
    save_file(load_file(str(path)), str(path), metadata=_header(saved))
    with pytest.raises(CheckpointError, match="has shape .* the config expects"):
        load_checkpoint(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(saved: Path, tmp_path: Path, bad: float) -> None:
    tensors = load_file(str(saved))
    tensors["offset_head.weight"][0, 0] = bad  # one diverged weight is enough to poison outputs
    path = tmp_path / "nan.safetensors"
    save_file(tensors, str(path), metadata=_header(saved))
    with pytest.raises(CheckpointError, match="'offset_head.weight' holds NaN or infinite"):
        load_checkpoint(path)


def test_missing_and_unexpected_tensors(saved: Path, tmp_path: Path) -> None:
    tensors = load_file(str(saved))
    header = _header(saved)
    tensors.pop("offset_head.weight")
    tensors["extra.weight"] = torch.zeros(1)
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(CheckpointError, match="missing \\['offset_head.weight'\\].*extra.weight"):
        load_checkpoint(path)


def test_lineage_chains_fine_tunes(model: CMFA, saved: Path, tmp_path: Path) -> None:
    import hashlib

    from facealign_ros.model.checkpoint import lineage_of

    assert read_metadata(saved).lineage == ()  # trained from scratch: no lineage key written
    first = lineage_of(saved)
    assert first == ({"training_command": read_metadata(saved).training_command,
                      "created": read_metadata(saved).created,
                      "sha256": hashlib.sha256(saved.read_bytes()).hexdigest()},)  # fmt: skip
    tuned = tmp_path / "tuned.safetensors"
    save_checkpoint(tuned, model, landmark_scheme="x", representations=[],
                    training_command="facealign train --init-from a", lineage=first)  # fmt: skip
    assert read_metadata(tuned).lineage == first
    chain = lineage_of(tuned)
    assert chain[:1] == first and chain[1]["training_command"] == "facealign train --init-from a"
    assert load_checkpoint(tuned)[1].lineage == first
