r"""Where BlazeFace's best box lands, frame by frame, on bags with ground truth.

For every ``--every``-th RGB frame of each bag, and for each ``--dim-level`` (the node's
``face_detector_dim_level``: dim frames are blurred and contrast-stretched first, 0 = never),
the frame goes through :class:`~facealign_ros.face.detector.BlazeFaceDetector` and its best
detection, framed as the node frames it
(:func:`~facealign_ros.pipeline.detection.box_from_detection`), is compared with the
ground-truth face box (the landmark extent, same framing): *on* the face when they overlap by
more than the node's wrong-lock limit (IoU > ``REDETECT_IOU``), *off* it otherwise, *none*
without a detection. Reported per level: frames, on, off, none, and how many frames were dim
(changed by the level); one row per bag. For the detections on the face, the framing the node's
constants stand for (``DETECTION_EXTENT``, ``DETECTION_DROP`` and their dim frame counterparts):
the landmark extent's side per detection side and the landmark-box centre below the detection's,
per detection side — median and quartiles, over dim and other frames apart (``framing``).

    python -m training.bench.detector_frames --bags 'data/synth_smallpix/test_*dark*' \\
        --dim-level 0,100 --every 3

The model comes from the cache (``facealign fetch-detector``) or ``--model``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.bench import expand_bags

COUNTS = ("frames", "on", "off", "none", "dim")
FRAMING = ("extent", "drop")


def framing_summary(samples: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """``{"n", "extent": [q25, median, q75], "drop": [...]}`` of ``(extent, drop)`` samples."""
    arr = np.asarray(samples, np.float64).reshape(-1, 2)
    out: dict[str, Any] = {"n": len(arr)}
    for k, name in enumerate(FRAMING):
        out[name] = (
            [round(float(q), 4) for q in np.percentile(arr[:, k], (25, 50, 75))]
            if len(arr)
            else None
        )
    return out


def _frames(bag: Path, every: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(rgb, gt points (70, 2), visible (70,))`` of every ``every``-th frame with ground truth."""
    from facealign_ros import topics
    from facealign_ros.bag import BagReader
    from facealign_ros.messages import image_from_msg, stamp_ns
    from training.replay import GT_TOPICS, GroundTruth

    gt, images = GroundTruth(), []
    with BagReader(bag) as reader:
        have = reader.topics
        gt_topics = [t for t in GT_TOPICS if t in have]
        if topics.IMAGE not in have or not gt_topics:
            raise ValueError(f"{bag}: needs {topics.IMAGE} and ground truth ({GT_TOPICS[0]})")
        for topic, _, msg in reader.messages([topics.IMAGE, *gt_topics]):
            if topic == topics.IMAGE:
                images.append((stamp_ns(msg), msg))
            else:
                gt.add(topic, msg)
    out = []
    for stamp, msg in images[::every]:
        m = gt.find(stamp)
        if m is not None:
            out.append((image_from_msg(msg), m[0], m[1]))
    return out


def run(
    bags: Sequence[Path], levels: Sequence[float], every: int, model: str | None = None
) -> dict[str, Any]:
    """Counts per dim level over ``bags`` (see the module docstring)."""
    from facealign_ros.face.crop import box_from_landmarks
    from facealign_ros.face.detector import BlazeFaceDetector, brighten_dim
    from facealign_ros.pipeline.detection import REDETECT_IOU, box_from_detection

    scale = 1.25  # any framing does: both boxes use it
    det = BlazeFaceDetector(model)  # dim_level 0: each level's frame is brightened here, once
    rows: list[list[dict[str, Any]]] = [[] for _ in levels]
    framing: list[dict[bool, list[tuple[float, float]]]] = [{False: [], True: []} for _ in levels]
    for bag in bags:
        frames = _frames(bag, every)
        for k, level in enumerate(levels):
            c = dict.fromkeys(COUNTS, 0)
            for rgb, pts, vis in frames:
                c["frames"] += 1
                seen = brighten_dim(rgb, level)
                dim = seen is not rgb
                c["dim"] += int(dim)
                found = det.detect(seen)
                if not found:
                    c["none"] += 1
                    continue
                best = dataclasses.replace(found[0], brightened=dim)
                face = box_from_landmarks(pts, vis, scale)
                on = box_from_detection(best, scale).iou(face) > REDETECT_IOU
                c["on" if on else "off"] += 1
                if on:
                    extent = face.side / scale
                    drop = face.cy - best.centre[1]
                    framing[k][dim].append((extent / best.side, drop / best.side))
            rows[k].append({"bag": bag.name, **c})
    return {
        "every": every,
        "levels": [
            {
                "dim_level": lv,
                **{n: sum(r[n] for r in rs) for n in COUNTS},
                "framing": {"dim": framing_summary(fr[True]), "other": framing_summary(fr[False])},
                "rows": rs,
            }
            for lv, rs, fr in zip(levels, rows, framing, strict=True)
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.bench.detector_frames --bags GLOB... [--dim-level 0,100]``."""
    p = argparse.ArgumentParser(
        prog="python -m training.bench.detector_frames",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bags", nargs="+", required=True, help="bag paths or glob patterns")
    p.add_argument("--dim-level", default="0,100", help="comma list of dim levels, 0-255")
    p.add_argument("--every", type=int, default=3, help="every N-th RGB frame")
    p.add_argument("--model", help="BlazeFace .tflite (default: the cached one)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    try:
        levels = [float(v) for v in args.dim_level.split(",") if v.strip()]
    except ValueError:
        levels = []
    if not levels or not all(0 <= lv <= 255 for lv in levels):
        sys.stderr.write(f"detector_frames: --dim-level {args.dim_level!r}: numbers in 0-255\n")
        return 2
    if args.every < 1:
        sys.stderr.write("detector_frames: --every must be >= 1\n")
        return 2
    bags = expand_bags(args.bags, "detector_frames")
    if bags is None:
        return 2
    from facealign_ros.bag import BagError
    from facealign_ros.face.detector import DetectorError

    try:
        result = run(bags, levels, args.every, args.model)
    except (ValueError, BagError, DetectorError) as exc:
        sys.stderr.write(f"detector_frames: {exc}\n")
        return 2
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    for lv in result["levels"]:
        sys.stdout.write(
            f"dim_level {lv['dim_level']:g}: {lv['frames']} frames ({lv['dim']} dim): best box on "
            f"the face {lv['on']}, off it {lv['off']}, no detection {lv['none']}\n"
        )
        for kind, f in lv["framing"].items():
            if f["n"]:
                sys.stdout.write(
                    f"  {kind} frames, {f['n']} detections on the face: extent per side "
                    f"{f['extent'][1]:.3f} (IQR {f['extent'][0]:.3f}-{f['extent'][2]:.3f}), "
                    f"drop per side {f['drop'][1]:.3f} "
                    f"(IQR {f['drop'][0]:.3f}-{f['drop'][2]:.3f})\n"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
