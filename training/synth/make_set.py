"""Generate a training/validation set of synthetic bags: ``python -m training.synth.make_set``.

Seeds decide everything: bag ``k`` of a split uses seed ``base + k``, light level
``LIGHTS[seed % 3]`` and motion ``MOTIONS[(seed // 3) % 2]``, so every split is balanced over
light and motion. Held-out seeds (validation, test) never overlap the training seeds. Bags
that already exist are kept (the command resumes an interrupted run). ``--first K`` starts
every split at bag ``K``: more bags of new seeds beside an existing set, or one share of a
set split between parallel runs. ``--rgb-camera small-pixel`` records the RGB frames with a
~3 um CMOS instead of the default DAVIS346-class sensor (same seeds: the same scenes).
``--no-face`` writes the same scenes without their person (no ground truth): the empty-seat
twins of a set, for measuring how often the node answers a face where there is none.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from training.synth.options import LIGHT_LEVELS, MOTIONS, RGB_CAMERAS

SPLIT_SEEDS = {"train": 1000, "val": 900_000, "test": 950_000}
"""First seed of each split."""


def plan(split: str, count: int, first: int = 0) -> list[tuple[str, int, str, str]]:
    """``(name, seed, light, motion)`` of bags ``first .. first + count - 1`` of a split."""
    if count < 0 or first < 0:
        raise ValueError(f"count and first must be >= 0, got {count}, {first}")
    lights = list(LIGHT_LEVELS)
    out = []
    for k in range(first, first + count):
        seed = SPLIT_SEEDS[split] + k
        light, motion = lights[seed % 3], MOTIONS[(seed // 3) % 2]
        out.append((f"{split}_{seed}_{light}_{motion}", seed, light, motion))
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the bags of the requested splits under ``--out``."""
    p = argparse.ArgumentParser(prog="python -m training.synth.make_set", description=__doc__)
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--train", type=int, default=30, help="training bags")
    p.add_argument("--val", type=int, default=6, help="validation bags")
    p.add_argument("--test", type=int, default=0, help="test bags")
    p.add_argument("--first", type=int, default=0, help="index of the first bag of each split")
    p.add_argument("--seconds", type=float, default=6.0, help="seconds per bag")
    p.add_argument("--workers", type=int, default=1, help="render workers per bag")
    p.add_argument("--rgb-camera", choices=tuple(RGB_CAMERAS), default="large-pixel",
                   help="RGB sensor preset (training.synth.options.RGB_CAMERAS)")  # fmt: skip
    p.add_argument("--no-face", action="store_true",
                   help="the scenes without their person (no ground truth)")  # fmt: skip
    args = p.parse_args(argv)
    if args.first < 0 or min(args.train, args.val, args.test) < 0:
        p.error("--first and the bag counts must be >= 0")

    from training.synth.assets import AssetError
    from training.synth.bagout import write_synth_bag
    from training.synth.camera import rgb_camera
    from training.synth.engine import SensorConfig
    from training.synth.scene import SceneConfig

    args.out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        for name, seed, light, motion in plan(split, getattr(args, split), args.first):
            path = args.out / name
            if path.exists():
                continue
            t0 = time.time()
            cfg = SceneConfig(seed=seed, seconds=args.seconds, light=light, motion=motion,
                              face=not args.no_face)  # fmt: skip
            try:
                sensor = SensorConfig(rgb=rgb_camera(args.rgb_camera, cfg.fps))
                stats = write_synth_bag(path, cfg, sensor, workers=args.workers)
            except AssetError as exc:  # e.g. no network for the head scans, no sdist given
                sys.stderr.write(f"make_set: error: {name}: {exc}\n")
                return 1
            sys.stdout.write(
                f"{name}: {stats['frames']} frames, {stats['events']} events, "
                f"{time.time() - t0:.1f} s\n"
            )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
