"""How well SSMER's label-free activity box matches the ground-truth face box.

For windows of bags with ground truth (every ``--every``-th labelled frame), compares
:func:`training.ssmer.sources.activity_box` on the 30 ms event window ending at the frame with the
face box from the ground-truth landmarks (landmark extent x 1.25): centre error in box sides and
side ratio, as medians and 10th/90th percentiles.

    python -m training.bench.activity_box --bags 'data/synth/train_10*'
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np


def measure(patterns: list[str], every: int, window_ns: int = 30_000_000) -> dict:
    """Centre error (in ground-truth box sides) and side ratio statistics."""
    from facealign_ros.face.crop import box_from_landmarks
    from training.data import expand_paths, load_bag_arrays
    from training.ssmer.sources import activity_box

    centre, ratio = [], []
    for path in expand_paths(patterns):
        bag = load_bag_arrays(path)
        min_side = 0.15 * min(bag.width, bag.height)  # stream_windows' default
        for r in range(0, bag.gt_stamps.size, every):
            t = int(bag.gt_stamps[r])
            box = activity_box(
                bag.events_between(t - window_ns, t), bag.width, bag.height, min_side
            )
            if box is None:
                continue
            gt = box_from_landmarks(np.asarray(bag.gt_points[r], float), bag.gt_visible[r], 1.25)
            centre.append(np.hypot(box.cx - gt.cx, box.cy - gt.cy) / gt.side)
            ratio.append(box.side / gt.side)

    def stats(x: list[float]) -> dict[str, float]:
        q = np.percentile(x, [10, 50, 90]) if x else [np.nan] * 3
        return {"p10": round(float(q[0]), 3), "median": round(float(q[1]), 3),
                "p90": round(float(q[2]), 3)}  # fmt: skip

    return {"windows": len(centre), "centre_error_sides": stats(centre), "side_ratio": stats(ratio)}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bags", nargs="+", required=True, help="bags with ground truth (globs)")
    p.add_argument("--every", type=int, default=9, help="every N-th labelled frame")
    a = p.parse_args(argv)
    sys.stdout.write(json.dumps(measure(a.bags, max(1, a.every))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
