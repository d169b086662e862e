"""``python -m training.bench.crop_input``: the crop's event input pieces against plain references.

On one 30 ms window of a 5 Mev/s stream (346x260, uniform events, seeded; ~150 k events) and a
face-sized crop (box side 110 px, 128x128 output):

* ``roi_copy``: :func:`facealign_ros.face.crop.events_in_roi` (branch-free numba kernel) vs the
  numpy way (boolean mask, take, shift); the outputs must be equal;
* ``warp``: :func:`facealign_ros.face.crop.warp_chw` (one OpenCV warp per plane) vs warping the
  channels-last stack in OpenCV groups of 4 + 2 channels (the former way), both against a float64
  bilinear reference: OpenCV's 2-channel float warp is the inexact one.

Interleaved rounds after a warm-up (:func:`training.bench.timing.interleaved_medians`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from facealign_ros.cli import positive_int
from facealign_ros.events import EVENT_DTYPE, make_events
from facealign_ros.events import representations as reps
from facealign_ros.face.crop import (
    Box,
    covering_roi,
    crop_affine,
    events_in_roi,
    shift_affine,
    warp_chw,
)
from training.bench import write_result
from training.bench.timing import interleaved_medians

W, H, S = 346, 260, 128


def _numpy_roi(events: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = roi
    keep = (events["x"] >= x0) & (events["x"] < x1) & (events["y"] >= y0) & (events["y"] < y1)
    out = events[keep]
    out["x"] -= np.uint16(x0)
    out["y"] -= np.uint16(y0)
    return out


def _grouped_warp(rep: np.ndarray, A: np.ndarray) -> np.ndarray:
    """The former way: channels last, OpenCV groups of at most 4 (6 = 4 + 2)."""
    hwc = np.ascontiguousarray(np.moveaxis(rep, 0, -1))
    parts = [
        cv2.warpAffine(np.ascontiguousarray(hwc[:, :, c : c + 4]), A, (S, S)).reshape(S, S, -1)
        for c in range(0, hwc.shape[2], 4)
    ]
    return np.ascontiguousarray(np.moveaxis(np.concatenate(parts, axis=2), -1, 0))


def _bilinear_reference(rep: np.ndarray, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 bilinear warp of every plane and the mask of crop pixels inside the source."""
    Ai = cv2.invertAffineTransform(A)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
    sx = Ai[0, 0] * xx + Ai[0, 1] * yy + Ai[0, 2]
    sy = Ai[1, 0] * xx + Ai[1, 1] * yy + Ai[1, 2]
    h, w = rep.shape[1:]
    inside = (sx >= 0) & (sy >= 0) & (sx <= w - 1) & (sy <= h - 1)
    x0 = np.clip(np.floor(sx).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(sy).astype(int), 0, h - 2)
    fx, fy = sx - x0, sy - y0
    img = rep.astype(np.float64)
    top = img[:, y0, x0] * (1 - fx) + img[:, y0, x0 + 1] * fx
    bottom = img[:, y0 + 1, x0] * (1 - fx) + img[:, y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy, inside


def run_crop_input_bench(repeats: int = 200, seed: int = 0) -> dict[str, Any]:
    """Median ms of each piece and its reference, the speed-ups and the accuracy figures."""
    rng = np.random.default_rng(seed)
    n = 150_000  # 5 Mev/s x 30 ms
    events = make_events(np.sort(rng.integers(0, 30_000_000, n)), rng.integers(0, W, n),
                         rng.integers(0, H, n), rng.integers(0, 2, n))  # fmt: skip
    events = events.astype(EVENT_DTYPE)
    A = crop_affine(Box(W / 2, H / 2, 110.0), S)
    roi = covering_roi(A, S, W, H)
    sub = events_in_roi(events, roi)
    w, h = roi[2] - roi[0], roi[3] - roi[1]
    t_end = 30_000_000
    stack = np.concatenate([
        reps.event_frame(sub, w, h, full_scale_count=2, channels=1),
        reps.time_surface(sub, w, h, t_end - 1, 10e6),
        reps.voxel_grid(sub, w, h, 3, 0, t_end - 1),
    ])  # fmt: skip
    A_roi = shift_affine(A, roi[0], roi[1])
    medians = interleaved_medians(
        {
            "roi_copy": lambda: events_in_roi(events, roi),
            "roi_copy_numpy": lambda: _numpy_roi(events, roi),
            "warp": lambda: warp_chw(stack, A_roi, S),
            "warp_grouped": lambda: _grouped_warp(stack, A_roi),
        },
        repeats,
    )
    ref, inside = _bilinear_reference(stack, A_roi)
    err = {
        name: float(np.abs(out - ref)[:, inside].max())
        for name, out in (("warp", warp_chw(stack, A_roi, S)),
                          ("warp_grouped", _grouped_warp(stack, A_roi)))
    }  # fmt: skip
    ms = {k: v * 1e3 for k, v in medians.items()}
    return {
        "events": int(events.size),
        "events_in_roi": int(sub.size),
        "roi": [int(v) for v in roi],
        "channels": int(stack.shape[0]),
        "median_ms": ms,
        "roi_copy_speedup": ms["roi_copy_numpy"] / ms["roi_copy"],
        "roi_copy_equal": bool(np.array_equal(sub, _numpy_roi(events, roi))),
        "warp_speedup": ms["warp_grouped"] / ms["warp"],
        "warp_max_abs_error": err["warp"],
        "warp_grouped_max_abs_error": err["warp_grouped"],
        "stack_max_abs": float(np.abs(stack).max()),
        "repeats": repeats,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.bench.crop_input [--repeats N] [--json]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=positive_int, default=200, help="interleaved timed rounds")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    result = run_crop_input_bench(args.repeats)
    write_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
