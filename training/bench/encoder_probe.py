r"""Linear probe of event encoders: how much landmark information their frozen features hold.

A quick screen for SSMER variants (minutes on a CPU, where the label-efficiency experiment takes
an hour): every encoder, frozen in eval mode, maps the same event-only crops (ground-truth
boxes, no augmentation) to its stride-4 feature map; the map average-pooled to a
``grid x grid`` layout is regressed onto the 70 landmarks by ridge regression fitted on labelled
training recordings (the penalty chosen on a held-out part of them, by recording), and the NME
(outer-eye-corner distance) is measured on held-out test recordings. An untrained encoder
(``random``, seeded) is the floor. One pass over the data serves every encoder.

    python -m training.bench.encoder_probe --train 'data/synth*/train_*' --label-fraction 0.1 \
        --test 'data/synth_more/test_*' --encoder random \
        --encoder runs/le_dense/ssmer_all3detdense/encoder.safetensors [--json]

A linear probe measures what the features hold before fine-tuning; it is a screen, not the
label-efficiency bar (docs/SSMER.md compares the two).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RANDOM = "random"
LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@dataclass
class Encoder:
    """A frozen event encoder and the input preprocessing it was trained on."""

    name: str
    backbone: object  # torch.nn.Module
    spec: object  # facealign_ros.face.preprocess.InputSpec


def load_encoder(path: str, seed: int = 0, like: Encoder | None = None) -> Encoder:
    """An SSMER ``encoder.safetensors`` (its ``encoder.*`` tensors), or ``random``.

    ``random`` builds the lite preset's event backbone with seeded initial weights, for the
    input preprocessing of ``like`` (default: the lite input).

    Raises:
        ValueError: unreadable file or tensors that do not fit the network in its metadata.
    """
    import torch

    from facealign_ros.face.preprocess import InputSpec
    from facealign_ros.model.backbones import build_backbone
    from facealign_ros.model.config import CMFAConfig, preset
    from training.ssmer.loop import read_ssmer_metadata
    from training.trainer.build import load_backbone_weights

    if path == RANDOM:
        spec = like.spec if like is not None else InputSpec(size=preset("lite").input_size)
        net = preset("lite", input_size=spec.size, event_channels=spec.event_channels)
        torch.manual_seed(seed)
        backbone = build_backbone(net, net.event_channels)
        return Encoder(RANDOM, backbone.eval(), spec)
    meta = read_ssmer_metadata(path)
    net = CMFAConfig.from_dict(meta["network"])
    spec = InputSpec.from_dict(meta["preprocessing"])
    backbone = build_backbone(net, net.event_channels)
    load_backbone_weights(backbone, path)  # its ``encoder.*`` tensors, checked
    return Encoder(str(path), backbone.eval(), spec)


def pooled_features(fmap: np.ndarray, grid: int) -> np.ndarray:
    """``(B, C, H, W)`` feature maps -> ``(B, C * grid * grid)`` cell averages (row-major)."""
    b, c, h, w = fmap.shape
    if h % grid or w % grid:
        raise ValueError(f"feature map {h}x{w} does not split into a {grid}x{grid} grid")
    cells = fmap.reshape(b, c, grid, h // grid, grid, w // grid).mean(axis=(3, 5))
    return cells.reshape(b, -1)


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, ...]:
    """Ridge regression ``y ~ x`` on standardised ``x``: ``(mean, std, W, y_mean)``."""
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-8
    xs = (x - mu) / sd
    ym = y.mean(axis=0)
    a = xs.T @ xs + lam * len(x) * np.eye(x.shape[1])
    w = np.linalg.solve(a, xs.T @ (y - ym))
    return mu, sd, w, ym


def ridge_predict(model: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
    """Predictions of :func:`ridge_fit`'s model for ``x``."""
    mu, sd, w, ym = model
    return ((x - mu) / sd) @ w + ym


def _nme(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    from facealign_ros.face.landmarks import REP155_70
    from training.metrics import nme_per_sample, normalizing_distance

    p, g = pred.reshape(gt.shape), gt
    return nme_per_sample(p, g, normalizing_distance(g, REP155_70))


def probe(
    features: dict[str, np.ndarray],
    landmarks: np.ndarray,
    recording: np.ndarray,
    is_test: np.ndarray,
) -> dict[str, dict[str, float]]:
    """Fit and score a ridge probe per encoder.

    Args:
        features: encoder name -> ``(M, D)`` features of all samples.
        landmarks: ``(M, 70, 2)`` ground truth (crop-normalised).
        recording: ``(M,)`` recording index of each sample (penalty chosen on held-out
            training recordings: every fourth one, or the last of two or three; with one
            recording, every fourth sample).
        is_test: ``(M,)`` True for test samples.

    Returns:
        name -> ``{"test_nme", "train_nme", "lambda"}``.
    """
    y = landmarks.reshape(len(landmarks), -1)
    train = ~is_test
    recs = np.unique(recording[train])
    if recs.size >= 2:  # whole recordings held out: every fourth one (at least one)
        held = train & np.isin(recording, recs[3::4] if recs.size >= 4 else recs[-1:])
    else:  # a single training recording: every fourth sample of it
        held = train & (np.arange(len(train)) % 4 == 3)
    fit = train & ~held
    out = {}
    for name, x in features.items():
        scores = {}
        for lam in LAMBDAS:
            model = ridge_fit(x[fit], y[fit], lam)
            scores[lam] = float(np.mean(_nme(ridge_predict(model, x[held]), landmarks[held])))
        lam = min(scores, key=scores.get)
        model = ridge_fit(x[train], y[train], lam)
        out[name] = {
            "test_nme": float(np.mean(_nme(ridge_predict(model, x[is_test]), landmarks[is_test]))),
            "train_nme": float(np.mean(_nme(ridge_predict(model, x[train]), landmarks[train]))),
            "lambda": lam,
        }
    return out


def run(
    encoders: Sequence[str],
    train: list[str],
    test: list[str],
    label_fraction: float,
    max_train: int,
    max_test: int,
    grid: int,
    seed: int = 0,
) -> dict:
    """Features of every encoder on the same samples, then :func:`probe`; a JSON-able dict."""
    import torch

    from training.data import (
        AugmentConfig,
        BagWindowDataset,
        expand_paths,
        labelled_subset,
        load_bag_arrays,
    )

    trained = {e: load_encoder(e, seed) for e in encoders if e != RANDOM}
    like = next(iter(trained.values()), None)  # a random encoder takes a trained one's input
    loaded = [trained[e] if e in trained else load_encoder(e, seed, like=like) for e in encoders]
    spec = loaded[0].spec
    for enc in loaded[1:]:
        if enc.spec != spec:
            raise ValueError(f"{enc.name}: its input preprocessing differs from {loaded[0].name}'s")
    sets = []
    for files, cap in (
        (labelled_subset(expand_paths(train), label_fraction, 0), max_train),
        (expand_paths(test), max_test),
    ):
        ds = BagWindowDataset(
            [load_bag_arrays(p) for p in files], spec, AugmentConfig(enabled=False), use_rgb=False
        )
        step = max(1, -(-len(ds) // cap))
        sets.append((ds, list(range(0, len(ds), step))[:cap]))
    feats: dict[str, list[np.ndarray]] = {e.name: [] for e in loaded}
    lms, rec, test_flag = [], [], []
    with torch.no_grad():  # a context: the grad mode of the caller stays as it was
        for is_test, (ds, idx) in enumerate(sets):
            for start in range(0, len(idx), 64):
                items = [ds[i] for i in idx[start : start + 64]]
                x = torch.from_numpy(np.stack([it["events"] for it in items]))
                for enc in loaded:
                    feats[enc.name].append(pooled_features(enc.backbone(x).numpy(), grid))
                lms.append(np.stack([it["landmarks"] for it in items]))
                rec += [ds.index[i][0] for i in idx[start : start + 64]]
                test_flag += [bool(is_test)] * len(items)
    result = probe(
        {k: np.concatenate(v).astype(np.float64) for k, v in feats.items()},
        np.concatenate(lms).astype(np.float64),
        np.asarray(rec),
        np.asarray(test_flag),
    )
    return {
        "encoders": result,
        "train_samples": int(len(test_flag) - sum(test_flag)),
        "test_samples": int(sum(test_flag)),
        "grid": grid,
        "label_fraction": label_fraction,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", action="append", required=True, help="encoder file or 'random'")
    p.add_argument("--train", nargs="+", required=True, help="labelled training bags / globs")
    p.add_argument("--test", nargs="+", required=True, help="held-out bags / globs")
    p.add_argument("--label-fraction", type=float, default=0.1)
    p.add_argument("--max-train", type=int, default=4000, help="training samples at most")
    p.add_argument("--max-test", type=int, default=900, help="test samples at most")
    p.add_argument("--grid", type=int, default=4, help="feature-map cells per side")
    p.add_argument("--seed", type=int, default=0, help="seed of the random encoder")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    try:
        out = run(a.encoder, a.train, a.test, a.label_fraction, a.max_train, a.max_test, a.grid,
                  a.seed)  # fmt: skip
    except (ValueError, FileNotFoundError, OSError) as exc:
        sys.stderr.write(f"encoder_probe: {exc}\n")
        return 2
    if a.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    lines = [
        f"{out['train_samples']} training / {out['test_samples']} test samples, "
        f"{a.grid}x{a.grid} cells",
        f"{'encoder':60s} {'test NME':>9s} {'train NME':>9s} {'lambda':>7s}",
    ]
    for name, r in out["encoders"].items():
        label = Path(name).parent.name or name
        lines.append(f"{label:60s} {r['test_nme']:9.4f} {r['train_nme']:9.4f} {r['lambda']:7g}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
