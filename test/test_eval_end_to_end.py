"""``facealign eval`` end to end on the toy dataset: JSON report, PNG plots, error paths."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from facealign_ros.face.landmarks import IBUG68
from facealign_ros.model.checkpoint import save_checkpoint
from facealign_ros.model.config import lite_config
from training.evaluate import (
    MODES,
    add_eval_parser,
    crop_to_sensor,
    evaluate,
    predict,
    run_eval,
    spread_indices,
)
from training.trainer import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")


PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = build.make_dataset({"kind": "toy", "size": 64, "num_samples": 32}, "train", 0)
    net = lite_config(input_size=64, num_points=68, backbone_width=8, event_channels=3)
    model = build.build_model(net, build.dataset_mean_shape(ds, 32), seed=0)
    path = tmp_path_factory.mktemp("model") / "toy.safetensors"
    save_checkpoint(path, model, landmark_scheme="ibug68", representations=("toy_blobs",))
    return path


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="facealign")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_eval_writes_json_and_plots(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse(
        [
            "eval",
            "--model",
            str(model_path),
            "--kind",
            "toy",
            "--option",
            "eval_samples=30",
            "--option",
            "size=64",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
            "--json",
        ]
    )
    assert run_eval(args) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("nme", "fr10", "auc10", "pose_mae_deg", "by_condition", "by_mode"):
        assert key in report
    assert report["num_samples"] == 30 and report["norm"] == "interocular"
    assert set(report["by_mode"]) == set(MODES)
    assert report["nme"] == report["by_mode"]["fused"]["nme"] > 0
    assert set(report["pose_mae_deg"]) >= {"yaw", "pitch", "roll", "mean"}
    conds = report["by_condition"]
    assert set(conds) == {f"light={x}" for x in ("normal", "low", "dark")} | {
        "motion=slow",
        "motion=fast",
    }
    assert sum(conds[f"light={x}"]["count"] for x in ("normal", "low", "dark")) == 30
    assert conds["motion=fast"]["rgb"]["nme"] is None or conds["motion=fast"]["rgb"]["nme"] > 0
    assert "fused_dark_over_normal" in report["ratios"]
    assert json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))["nme"] == report["nme"]
    for name in ("ced.png", "by_condition.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


def test_eval_interpupil_and_mode_subset(
    model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["eval", "--model", str(model_path), "--kind", "toy", "--option", "eval_samples=8"]
    args = _parse([*base, "--option", "size=64", "--norm", "interpupil", "--modes", "event"])
    assert run_eval(args) == 0
    out = capsys.readouterr().out
    assert "interpupil" in out and "event" in out and "fused" not in out


def test_eval_errors(model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        wrong_size = ["--kind", "toy", "--option", "size=32"]
        assert run_eval(_parse(["eval", "--model", str(model_path), *wrong_size])) == 2
        assert "does not fit the model" in caplog.text
        assert run_eval(_parse(["eval", "--model", str(tmp_path / "none.safetensors")])) == 2
        assert "file not found" in caplog.text
        bad_mode = ["--kind", "toy", "--modes", "thermal"]
        assert run_eval(_parse(["eval", "--model", str(model_path), *bad_mode])) == 2
        afile = tmp_path / "afile"
        afile.write_text("mine")
        to_file = ["--kind", "toy", "--out", str(afile)]
        assert run_eval(_parse(["eval", "--model", str(model_path), *to_file])) == 2
        assert "is a file" in caplog.text and afile.read_text() == "mine"


def test_evaluate_uses_pose_fn_and_crop_to_sensor() -> None:
    ds = build.make_dataset({"kind": "toy", "size": 64, "eval_samples": 6}, "val", 0)
    net = lite_config(input_size=64, num_points=68, backbone_width=8)
    model = build.build_model(net, None, seed=0)
    calls = []

    def pose_fn(points: np.ndarray, scheme: object, K: object) -> np.ndarray:
        calls.append((points.shape, K))
        return np.zeros((len(points), 3))

    res = evaluate(model, ds, IBUG68, modes=("fused",), pose_fn=pose_fn)
    assert calls == [((6, 68, 2), None)]
    gt = np.stack([ds[i]["pose_deg"] for i in range(6)])
    assert res.report["pose_mae_deg"]["yaw"] == pytest.approx(np.abs(gt[:, 0]).mean(), rel=1e-6)
    A = np.array([[[2.0, 0.0, 10.0], [0.0, 2.0, -4.0]]])
    pts = crop_to_sensor(np.array([[[0.5, 0.25]]]), A, 64)
    np.testing.assert_allclose(pts, [[[(31.5 - 10) / 2, (15.5 + 4) / 2]]])


def test_limit_spreads_samples_over_the_dataset() -> None:
    np.testing.assert_array_equal(spread_indices(10, 4), [0, 2, 5, 7])
    np.testing.assert_array_equal(spread_indices(5, 0), np.arange(5))
    np.testing.assert_array_equal(spread_indices(3, 8), np.arange(3))
    for n, k in [(7, 7), (100, 33), (1080, 256)]:
        idx = spread_indices(n, k)
        assert len(idx) == k and (np.diff(idx) > 0).all() and idx[-1] >= n - n // k - 1
    with pytest.raises(ValueError, match="limit"):
        spread_indices(4, -1)
    ds = build.make_dataset({"kind": "toy", "size": 64, "eval_samples": 12}, "val", 0)
    model = build.build_model(lite_config(input_size=64, num_points=68, backbone_width=8), None, 0)
    pred = predict(model, ds, ("fused",), batch_size=4, limit=3)
    np.testing.assert_array_equal(pred.indices, [0, 4, 8])
    np.testing.assert_allclose(pred.gt, np.stack([ds[i]["landmarks"] for i in (0, 4, 8)]))
