"""Training data: ground-truth bags decoded to arrays, and cropped samples for the model."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import numpy as np

from facealign_ros.face.preprocess import InputSpec
from training.data.bag_arrays import BagArrays, load_bag_arrays
from training.data.dataset import SAMPLE_KEYS, AugmentConfig, BagWindowDataset

__all__ = [
    "SAMPLE_KEYS",
    "AugmentConfig",
    "BagArrays",
    "BagWindowDataset",
    "build_dataset",
    "expand_paths",
    "labelled_subset",
    "load_bag_arrays",
]


def expand_paths(patterns: list[str] | str) -> list[Path]:
    """Bag paths from paths and glob patterns (sorted, de-duplicated).

    Raises:
        FileNotFoundError: if a pattern matches nothing.
    """
    out: list[Path] = []
    for pat in [patterns] if isinstance(patterns, str) else patterns:
        hits = sorted(glob.glob(str(pat))) or ([pat] if Path(pat).exists() else [])
        if not hits:
            raise FileNotFoundError(f"no bag matches {pat!r}")
        out += [Path(h) for h in hits if Path(h) not in out]
    return out


def labelled_subset(files: list[Path], fraction: float, seed: int = 0) -> list[Path]:
    """``max(1, round(fraction * n))`` of ``files``, picked by a permutation drawn from ``seed``.

    The picked files keep their given order.

    Raises:
        ValueError: ``fraction`` outside ``(0, 1]``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"data config: label_fraction must be in (0, 1], got {fraction}")
    n = max(1, round(fraction * len(files)))
    keep = set(np.random.default_rng(seed).permutation(len(files))[:n].tolist())
    return [f for i, f in enumerate(files) if i in keep]


def build_dataset(cfg_data: dict[str, Any], split: str, seed: int) -> BagWindowDataset:
    """Dataset of ``split`` from a data config.

    ``cfg_data`` keys: ``kind: bags``; ``paths: {train: [...], val: [...]}`` (paths or globs);
    ``input``: :class:`~facealign_ros.face.preprocess.InputSpec` fields; ``augment``:
    :class:`AugmentConfig` fields (applied to the ``train`` split only); ``hf_per_frame``:
    high-rate samples per frame interval (train split; 0 for evaluation); ``label_fraction``
    (train split, default 1): use the labels of only this fraction of the recordings (at least
    one), chosen by a fixed seeded permutation (``label_seed``, default 0) independent of the run's
    seed, so runs compared at the same fraction train on the same labels; ``use_rgb`` (default
    true): false gives samples without RGB (``rgb_present`` False), for event-only cameras and
    event-only training. ``paths.negatives`` (train split; optional): recordings without a
    person (an empty seat; no ground truth needed) whose frames become negative crops where the
    node's face search looks (:class:`BagWindowDataset`), each frame ``negative_repeat`` times
    per epoch (default 1).
    """
    known = {"kind", "paths", "input", "augment", "hf_per_frame", "eval_hf_per_frame",
             "label_fraction", "label_seed", "use_rgb", "negative_repeat"}  # fmt: skip
    if unknown := sorted(set(cfg_data) - known):
        raise ValueError(f"data config: unknown keys {unknown}")
    if cfg_data.get("kind", "bags") != "bags":
        raise ValueError(f"data config: unknown kind {cfg_data.get('kind')!r}")
    all_paths = cfg_data.get("paths", {})
    if not isinstance(all_paths, dict):
        raise ValueError("data config: paths must map a split to a list of bags (globs)")
    paths = all_paths.get(split)
    if not paths:
        raise ValueError(f"data config: no paths for split {split!r}")
    if not (isinstance(paths, str) or (isinstance(paths, list)
                                       and all(isinstance(x, str) for x in paths))):  # fmt: skip
        raise ValueError(f"data config: paths.{split} must be a list of bags (globs)")
    spec = InputSpec.from_dict(cfg_data.get("input", {}))
    train = split == "train"
    augment = AugmentConfig.from_dict(cfg_data.get("augment", {})) if train else None
    hf_key = "hf_per_frame" if train else "eval_hf_per_frame"
    hf = int(cfg_data.get(hf_key, 0))
    label_seed = int(cfg_data.get("label_seed", 0))
    if hf < 0 or label_seed < 0:
        raise ValueError(f"data config: {hf_key} and label_seed must be >= 0")
    files = expand_paths(paths)
    if train:
        files = labelled_subset(files, float(cfg_data.get("label_fraction", 1.0)), label_seed)
    bags = [load_bag_arrays(p) for p in files]
    use_rgb = cfg_data.get("use_rgb", True)
    if not isinstance(use_rgb, bool):
        raise ValueError(f"data config: use_rgb must be true or false, got {use_rgb!r}")
    repeat = cfg_data.get("negative_repeat", 1)
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
        raise ValueError(f"data config: negative_repeat must be an integer >= 1, got {repeat!r}")
    negatives = []
    if train and cfg_data.get("paths", {}).get("negatives"):
        neg_files = expand_paths(cfg_data["paths"]["negatives"])
        negatives = [load_bag_arrays(p, require_gt=False) for p in neg_files]
    return BagWindowDataset(
        bags, spec, augment, seed=seed, hf_per_frame=hf, use_rgb=use_rgb,
        negative_bags=negatives, negative_repeat=repeat,
    )  # fmt: skip
