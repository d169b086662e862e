r"""How well a model's mean landmark confidence tells face crops from background crops.

The pipeline's face search (``facealign_ros/pipeline/align.py``) keeps a candidate crop when
``mean confidence x plausibility >= detect_threshold``. This measures the first factor on
crops made by the training data's own code (:class:`training.data.BagWindowDataset`): *face*
crops are ground-truth boxes with the training jitter (a tracker's or a refined search's box),
*background* crops are face-sized boxes elsewhere in the view (``negative_prob=1``). It prints
quantiles of both, the ROC AUC, and the thresholds that keep 90% / 95% of face crops with the
background share they let through.

    python -m training.bench.face_search --model facealign_ros/weights/cmfa_lite.safetensors \\
        --bags 'data/synth/val_*' --samples 512 [--mode fused|event|rgb]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MODES = ("fused", "event", "rgb")


def mean_confidences(
    model_path: Path, patterns: list[str], samples: int, seed: int, mode: str = "fused"
) -> dict:
    """``{"face": (n,), "background": (n,)}`` mean confidences.

    ``mode``: the inputs the network gets: ``fused``, ``event`` (RGB absent) or ``rgb``.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: choose from {MODES}")
    import torch

    from facealign_ros.model import FaceAligner
    from facealign_ros.pipeline.model import spec_from_preprocessing
    from training.data import AugmentConfig, BagWindowDataset, expand_paths, load_bag_arrays

    aligner = FaceAligner.from_checkpoint(model_path, device="cpu")
    cfg = aligner.config
    spec = spec_from_preprocessing(dict(aligner.meta.preprocessing), cfg.input_size,
                                   cfg.event_channels)  # fmt: skip
    bags = [load_bag_arrays(p) for p in expand_paths(patterns)]
    out = {}
    for name, p_neg in (("face", 0.0), ("background", 1.0)):
        ds = BagWindowDataset(bags, spec, AugmentConfig(negative_prob=p_neg), seed=seed)
        idx = np.random.default_rng(seed).choice(len(ds), min(samples, len(ds)), replace=False)
        items = [ds[int(i)] for i in idx]
        items = [s for s in items if s["face_present"] == (p_neg == 0)]
        confs = []
        with torch.no_grad():
            for k in range(0, len(items), 32):
                chunk = items[k : k + 32]
                ev = np.stack([s["events"] for s in chunk]) if mode != "rgb" else None
                rgb = np.stack([s["rgb"] for s in chunk]) if mode != "event" else None
                confs.append(aligner.predict(ev, rgb).confidence.mean(axis=1))
        out[name] = np.concatenate(confs)
    return out


def _quantiles(x: np.ndarray, q: tuple[float, ...]) -> dict[str, float]:
    return dict(zip(map(str, q), np.quantile(x, q).round(4).tolist(), strict=True))


def summary(conf: dict) -> dict:
    """Quantiles, ROC AUC and thresholds keeping 90% / 95% of faces."""
    face, bg = np.sort(conf["face"]), np.sort(conf["background"])
    # AUC = P(face score > background score), ties count half
    greater = np.searchsorted(bg, face, side="left").sum()
    ties = (np.searchsorted(bg, face, side="right") - np.searchsorted(bg, face, side="left")).sum()
    auc = (greater + 0.5 * ties) / (face.size * bg.size)
    q = (0.05, 0.1, 0.5, 0.9, 0.95)
    res = {
        "face_quantiles": _quantiles(face, q),
        "background_quantiles": _quantiles(bg, q),
        "roc_auc": round(float(auc), 4),
        "n_face": int(face.size),
        "n_background": int(bg.size),
    }
    for keep in (0.9, 0.95):
        thr = float(np.quantile(face, 1 - keep))
        res[f"threshold_keeping_{int(keep * 100)}pct_faces"] = round(thr, 4)
        res[f"background_above_it_{int(keep * 100)}"] = round(float((bg >= thr).mean()), 4)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--bags", nargs="+", required=True, help="bags with ground truth (globs)")
    p.add_argument("--samples", type=int, default=512, help="crops of each kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=MODES, default="fused", help="inputs the network gets")
    a = p.parse_args(argv)
    res = summary(mean_confidences(a.model, a.bags, a.samples, a.seed, a.mode))
    sys.stdout.write(json.dumps({"model": str(a.model), "mode": a.mode, **res}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
