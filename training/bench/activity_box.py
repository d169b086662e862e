"""How well SSMER's label-free boxes match the ground-truth face box.

For windows of bags with ground truth (every ``--every``-th labelled frame), compares
:func:`training.ssmer.sources.activity_box` on the 30 ms event window ending at the frame, and
(``--detector``) the crop BlazeFace's best detection in the RGB frame gives
(:func:`~facealign_ros.pipeline.detection.box_from_detection`), with the face box from the
ground-truth landmarks (landmark extent x 1.25): centre error in box sides and side ratio, as
medians and 10th/90th percentiles, overall and per light level; for the detector also the
fraction of frames with a detection.

    python -m training.bench.activity_box --bags 'data/synth/train_10*' --detector
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np


def _stats(x: list[float]) -> dict[str, float]:
    q = np.percentile(x, [10, 50, 90]) if x else [np.nan] * 3
    return {"p10": round(float(q[0]), 3), "median": round(float(q[1]), 3),
            "p90": round(float(q[2]), 3)}  # fmt: skip


def _summary(centre: list[float], ratio: list[float], frames: int) -> dict:
    return {"windows": len(centre), "found": round(len(centre) / max(frames, 1), 3),
            "centre_error_sides": _stats(centre), "side_ratio": _stats(ratio)}  # fmt: skip


def measure(
    patterns: list[str], every: int, window_ns: int = 30_000_000, detector: bool = False
) -> dict:
    """Centre error (in ground-truth box sides) and side ratio statistics per box source."""
    from facealign_ros.face.crop import box_from_landmarks
    from facealign_ros.face.detector import BlazeFaceDetector
    from facealign_ros.pipeline.detection import box_from_detection
    from training.data import expand_paths, load_bag_arrays
    from training.data.bag_arrays import LIGHTS
    from training.ssmer.sources import activity_box

    det = BlazeFaceDetector() if detector else None
    sources = ("activity", "detector") if detector else ("activity",)
    rows: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    frames: dict[str, int] = {}
    for path in expand_paths(patterns):
        bag = load_bag_arrays(path)
        light = LIGHTS[bag.light] if bag.light >= 0 else "unknown"
        min_side = 0.15 * min(bag.width, bag.height)  # stream_windows' default
        for r in range(0, bag.gt_stamps.size, every):
            t = int(bag.gt_stamps[r])
            gt = box_from_landmarks(np.asarray(bag.gt_points[r], float), bag.gt_visible[r], 1.25)
            boxes = {
                "activity": activity_box(
                    bag.events_between(t - window_ns, t), bag.width, bag.height, min_side
                )
            }
            if det is not None and bag.frame_stamps.size:
                f = int(np.argmin(np.abs(bag.frame_stamps - t)))
                found = det.detect(np.asarray(bag.frames[f]))
                boxes["detector"] = box_from_detection(found[0], 1.25) if found else None
            for key in (light, "all"):
                frames[key] = frames.get(key, 0) + 1
                for name, box in boxes.items():
                    if box is None:
                        continue
                    c, q = rows.setdefault((name, key), ([], []))
                    c.append(float(np.hypot(box.cx - gt.cx, box.cy - gt.cy) / gt.side))
                    q.append(float(box.side / gt.side))
    return {
        name: {
            key: _summary(*rows.get((name, key), ([], [])), frames[key])
            for key in ("all", *[k for k in (*LIGHTS, "unknown") if k in frames])
        }
        for name in sources
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bags", nargs="+", required=True, help="bags with ground truth (globs)")
    p.add_argument("--every", type=int, default=9, help="every N-th labelled frame")
    p.add_argument("--detector", action="store_true", help="also BlazeFace on the RGB frame")
    a = p.parse_args(argv)
    out = measure(a.bags, max(1, a.every), detector=a.detector)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
