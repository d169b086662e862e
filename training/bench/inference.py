"""``python -m training.bench.inference``: the network forward, eager vs traced graphs.

Times :meth:`~facealign_ros.model.FaceAligner.predict` on one 128x128 crop for every signature
the pipeline uses per frame (fused / event-only, cold = all stages from the mean shape, warm =
the finest stage from given landmarks, and fused warm with the RGB features of the frame
reused), with the eager modules (``trace=False``) and the traced graphs (the default), in
interleaved rounds (:func:`training.bench.timing.interleaved_medians`) after a warm-up, on the
shipped weights (a random-weight lite network of the same architecture without them), CPU, one
torch thread. The outputs of both paths are compared too (max abs landmark difference).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _aligners(trace: bool) -> Any:
    from facealign_ros.model import FaceAligner
    from facealign_ros.model.cmfa import CMFA
    from facealign_ros.model.config import lite_config
    from facealign_ros.pipeline import default_model_path

    path = default_model_path()
    if path.is_file():
        return FaceAligner.from_checkpoint(path, "cpu", trace=trace), str(path)
    import torch

    torch.manual_seed(0)
    return FaceAligner(CMFA(lite_config(num_points=70)), None, "cpu", trace=trace), "random lite"


def run_inference_bench(repeats: int = 200, seed: int = 0) -> dict[str, Any]:
    """Median ms per call of each signature, eager and traced; JSON-able."""
    import torch

    from training.bench.timing import interleaved_medians

    torch.set_num_threads(1)
    eager, weights = _aligners(False)
    traced, _ = _aligners(True)
    cfg = eager.config
    rng = np.random.default_rng(seed)
    s = cfg.input_size
    ev = rng.random((1, cfg.event_channels, s, s), dtype=np.float32)
    im = rng.random((1, cfg.rgb_channels, s, s), dtype=np.float32)
    init = rng.uniform(0.3, 0.7, (1, cfg.num_points, 2)).astype(np.float32)
    feats = {"eager": eager.rgb_features(im), "traced": traced.rgb_features(im)}
    calls: dict[str, Callable[[Any, Any], Any]] = {
        "fused_cold": lambda a, f: a.predict(ev, im),
        "fused_warm": lambda a, f: a.predict(ev, im, init_landmarks=init, stages=1),
        "fused_warm_rgb_reused": lambda a, f: a.predict(
            ev, rgb_features=f, init_landmarks=init, stages=1
        ),
        "event_cold": lambda a, f: a.predict(ev),
        "event_warm": lambda a, f: a.predict(ev, init_landmarks=init, stages=1),
    }
    traced.warm_up(1)
    fns = {}
    for name, call in calls.items():
        for label, aligner in (("eager", eager), ("traced", traced)):
            fns[f"{name}/{label}"] = (lambda c, a, f: lambda: c(a, f))(call, aligner, feats[label])
    medians = interleaved_medians(fns, repeats)
    out: dict[str, Any] = {"weights": weights, "repeats": repeats, "threads": 1, "signatures": {}}
    for name, call in calls.items():
        e, t = medians[f"{name}/eager"] * 1e3, medians[f"{name}/traced"] * 1e3
        diff = np.abs(
            call(eager, feats["eager"]).landmarks - call(traced, feats["traced"]).landmarks
        )
        out["signatures"][name] = {
            "eager_ms": e,
            "traced_ms": t,
            "speedup": e / t,
            "max_abs_diff": float(diff.max()),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.bench.inference [--repeats N] [--json]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=200, help="interleaved timed rounds")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.repeats < 1:
        sys.stderr.write("bench inference: --repeats >= 1 please\n")
        return 2
    result = run_inference_bench(args.repeats)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    sys.stdout.write(f"weights {result['weights']}, 1 torch thread, {args.repeats} rounds\n")
    sys.stdout.write(f"{'signature':<24} {'eager ms':>9} {'traced ms':>9} {'speedup':>8}\n")
    for name, r in result["signatures"].items():
        sys.stdout.write(
            f"{name:<24} {r['eager_ms']:9.2f} {r['traced_ms']:9.2f} {r['speedup']:7.2f}x\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
