"""Linear probe of event encoders: pooling, ridge regression, end to end on a tiny bag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.bench.encoder_probe import main, pooled_features, ridge_fit, ridge_predict


def test_pooled_features_average_cells_row_major() -> None:
    fmap = np.arange(2 * 1 * 4 * 4, dtype=np.float64).reshape(2, 1, 4, 4)
    out = pooled_features(fmap, 2)
    # sample 0: cells (rows 0-1, cols 0-1) = mean(0, 1, 4, 5) = 2.5, then 4.5, 10.5, 12.5
    np.testing.assert_allclose(out[0], [2.5, 4.5, 10.5, 12.5])
    np.testing.assert_allclose(out[1], out[0] + 16)
    with pytest.raises(ValueError, match="grid"):
        pooled_features(fmap, 3)


def test_ridge_recovers_a_linear_map_and_shrinks_with_the_penalty() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    w = rng.normal(size=(5, 3))
    y = x @ w + 2.0
    fitted = ridge_predict(ridge_fit(x, y, 1e-8), x)
    np.testing.assert_allclose(fitted, y, atol=1e-6)
    heavy = ridge_predict(ridge_fit(x, y, 1e6), x)
    np.testing.assert_allclose(heavy, np.full_like(y, 2.0) + (y.mean(0) - 2.0), atol=1e-3)


def test_cli_probes_random_and_pretrained_encoders(
    synth_bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    from training.ssmer.config import load_ssmer_config
    from training.ssmer.loop import Pretrainer
    from training.ssmer.sources import find_sources

    root = Path(__file__).resolve().parents[1]
    cfg = load_ssmer_config(
        root / "training" / "configs" / "ssmer_lite.yaml",
        ["data.batch_size=4", "data.num_workers=0", "data.stride_ms=20", "model.proj_dim=16",
         "model.pred_dim=8", "run.progress=false", "run.tensorboard=false", "run.device=cpu",
         "schedule.steps=2", "schedule.warmup_steps=1", f"run.out_dir={tmp_path / 'ssmer'}"],
    )  # fmt: skip
    enc = Pretrainer(cfg, find_sources([synth_bag])[0]).fit().encoder_path
    args = ["--encoder", "random", "--encoder", str(enc), "--train", str(synth_bag),
            "--test", str(synth_bag), "--label-fraction", "1", "--max-train", "8",
            "--max-test", "4", "--json"]  # fmt: skip
    assert main(args) == 0
    import torch

    assert torch.is_grad_enabled()  # the probe leaves the caller's grad mode alone
    out = json.loads(capsys.readouterr().out)
    assert set(out["encoders"]) == {"random", str(enc)}
    assert 4 <= out["train_samples"] <= 8 and 2 <= out["test_samples"] <= 4  # evenly spaced
    for r in out["encoders"].values():
        assert np.isfinite(r["test_nme"]) and r["test_nme"] > 0 and r["lambda"] > 0
    assert main([*args[:2], "--encoder", str(tmp_path / "nope.safetensors"), *args[4:]]) == 2
    assert "encoder_probe" in capsys.readouterr().err
