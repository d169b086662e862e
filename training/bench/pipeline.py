"""``facealign bench pipeline``: latency, memory and rates of the pipeline under real-time load.

Three phases, each feeding the pipeline in real time from one feeder thread while a
:class:`~facealign_ros.pipeline.LatestOnlyWorker` answers (exactly as the node does):

1. ``fused``: RGB at 30 Hz (+ camera_info) and evt3 packets (1 ms of sensor time each, published
   when their millisecond has passed) at ``event_rate`` events/s; reports the input-to-result
   latency percentiles, compute time, the fraction of frames dropped as stale, peak RSS, the
   share of answers with a face and (with ground truth) their NME;
2. ``events`` (keys ``events_mode_*``): the same inputs (RGB 30 Hz + events) in ``mode: events``
   with ``rate_hz`` = 200: answers on the event grid, reusing the newest RGB frame (and its
   features) while it is fresh; reports answers per second, the share with a face and their NME;
3. ``events`` without any image (keys ``events_only_*``): the dark case, events alone.

Scenarios (``scenario`` in the result):

* ``face`` (default; the bar's "1 face"): a synthetic recording with one face (346x260, normal
  light, slow motion, ground truth; generated once and cached under ``$FACEALIGN_CACHE``, or
  ``bag``), played forward then backward (a mirrored loop: the face never jumps, time keeps
  increasing) with uniform background events added so the total rate is ``event_rate``;
* ``search``: a moving face-sized blob of events plus background noise and a blank-ish image,
  where no face is ever found, so every answer pays the face search (the worst case).

Memory: ``peak_rss_mb`` is the process's high-water mark, input preparation included;
``setup_peak_rss_mb`` that mark before the phases (a long or high-rate recording's arrays peak
there); ``phases_peak_rss_mb`` the largest resident set sampled while the phases ran (the
pipelines plus the pre-encoded inputs, ``inputs_mb``, that they are fed from).

Packets are encoded before the clock starts, so the feeder only publishes. Without trained
weights (``facealign_ros/weights/cmfa_lite.safetensors``) a random-weight lite network of the
same architecture is used and the detection threshold is 0 (the result says which weights).
Otherwise the pipeline runs with :class:`~facealign_ros.pipeline.PipelineConfig`'s defaults.
"""

from __future__ import annotations

import argparse
import gc
import math
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facealign_ros.pipeline import LatestOnlyWorker, Pipeline, PipelineConfig, default_model_path
from training.bench import write_result
from training.bench.memory import RssSampler
from training.bench.pipeline_inputs import (
    EVENTS,
    IMAGE,
    INFO,
    blob_stream,
    face_stream,
    mirror_loop,
    synth_recording,
)

SCENARIOS = ("face", "search")


def _random_checkpoint(path: Path) -> None:
    import torch

    from facealign_ros.face.preprocess import InputSpec
    from facealign_ros.model import CMFA, lite_config, save_checkpoint

    torch.manual_seed(0)
    spec = InputSpec()
    cfg = lite_config(num_points=70, input_size=spec.size, event_channels=spec.event_channels)
    save_checkpoint(path, CMFA(cfg), landmark_scheme="rep155_70",
                    representations=spec.representations, preprocessing=spec.to_dict())  # fmt: skip


def _feed(pipe: Pipeline, worker: LatestOnlyWorker, inputs: list) -> None:
    calls = {EVENTS: pipe.on_events, INFO: pipe.on_camera_info, IMAGE: pipe.on_image}
    start = time.monotonic_ns()
    for t, kind, msg in inputs:
        delay = (start + t - time.monotonic_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        calls[kind](msg)
        worker.notify()


def _phase(config: PipelineConfig, inputs: list) -> tuple[Pipeline, list]:
    pipe = Pipeline.from_config(config)
    pipe.warm_up()  # as the node's configure
    results: list = []
    worker = LatestOnlyWorker(pipe, results.append)
    for _, kind, msg in [x for x in inputs if x[0] < 200_000_000]:  # compile kernels, warm up
        if kind == INFO:
            pipe.on_camera_info(msg)
            continue
        (pipe.on_events if kind == EVENTS else pipe.on_image)(msg, 0)
        pipe.step(0, flush=True)
    pipe.reset()
    pipe.stats.__init__()
    worker.start()
    feeder = threading.Thread(target=_feed, args=(pipe, worker, inputs))
    feeder.start()
    feeder.join()
    time.sleep(0.2)
    worker.stop()
    return pipe, results


def _report(res: list, snap: dict[str, Any], gt: Any, seconds: float) -> dict[str, Any]:
    """Figures of one phase: latency, compute, answers/s, stale drops, faces, NME.

    ``face_confidence_p50``: median over the answers with a face of their mean landmark
    confidence (what the published ``c`` values say).
    """
    from training.replay import score

    lat = np.array([r.latency_ms for r in res])
    faces = int(sum(r.has_face for r in res))
    conf = [float(np.mean(r.confidence)) for r in res if r.has_face]
    stale = snap["drops"]["stale"]
    metrics = score(res, gt) if gt is not None else None
    pct = {f"p{q}_ms": float(np.percentile(lat, q)) if lat.size else None for q in (50, 90, 99)}
    return {**pct, "compute_p50_ms": snap["compute_p50_ms"],
            "compute_p99_ms": snap["compute_p99_ms"], "hz": len(res) / seconds,
            "dropped_fraction": stale / max(stale + snap["targets"], 1), "results": len(res),
            "faces": faces, "face_share": faces / len(res) if res else 0.0,
            "face_confidence_p50": float(np.median(conf)) if conf else None,
            "nme": None if metrics is None else metrics.get("nme"),
            "detect_runs": snap["detect_runs"], "detector_runs": snap.get("detector_runs", 0),
            "metrics": metrics}  # fmt: skip


def run_pipeline_bench(seconds: float = 4.0, event_rate: float = 5e6, model: str = "",
                       device: str = "cpu", scenario: str = "face", bag: str | Path | None = None,
                       scene_seconds: float = 3.0, seed: int = 0,
                       threads: int | None = None,
                       params: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Measure the pipeline (see the module docstring); returns the JSON-able result.

    Args:
        seconds: seconds fed per phase.
        event_rate: total events per second.
        model: checkpoint (default: the shipped weights).
        device: network device.
        scenario: one of :data:`SCENARIOS`.
        bag: ``face``: a recording with ground truth to loop (default: the cached synthetic one).
        scene_seconds: ``face``: length of the synthetic recording generated.
        seed: synthetic scene and noise seed.
        threads: torch intra-op threads (None: the pipeline's default, 1).
        params: other node parameters (:class:`PipelineConfig` fields), e.g.
            ``{"face_detector": "grid"}``.

    Raises:
        ValueError: a bad setting, or a ``model``/``bag`` that is not there (an explicit
            checkpoint is never replaced by the random-weight stand-in).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose {SCENARIOS}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"--seconds must be a finite number > 0, got {seconds}")
    if not (math.isfinite(event_rate) and event_rate > 0):
        raise ValueError(f"--event-rate must be a finite number > 0, got {event_rate}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if model and not Path(model).is_file():
        raise ValueError(f"--model {model!r}: no such checkpoint file")
    if bag is not None and not Path(bag).exists():
        raise ValueError(f"--bag {str(bag)!r} does not exist")
    notes: list[str] = []
    extra: dict[str, Any] = {}
    gt = None
    if scenario == "face":
        from training.data import load_bag_arrays

        source = Path(bag) if bag is not None else synth_recording(scene_seconds, seed)
        loop = mirror_loop(load_bag_arrays(source))
        s = face_stream(loop, seconds, event_rate, seed)
        packets, images, gt = s["packets"], s["images"], s["gt"]
        extra = {"recording": str(source), "loop_s": loop.period_ns / 1e9,
                 "face_event_rate_mev_s": s["face_event_rate"] / 1e6}  # fmt: skip
        event_rate = s["event_rate"]
        del loop
    else:
        pk, im = blob_stream(seconds, event_rate, seed)
        packets = [(t, EVENTS, m) for t, m in pk]
        images = [(t, IMAGE, m) for t, m in im]
    sizes = [m.events.size for _, _, m in packets]
    sizes += [m.data.size for _, k, m in images if k == IMAGE]
    inputs_mb = sum(sizes) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        path = model or str(default_model_path())
        weights = path
        kw: dict[str, Any] = dict(params or {})
        if threads is not None:
            kw["torch_threads"] = int(threads)
        if not Path(path).is_file():
            path = str(Path(tmp) / "random_lite.safetensors")
            _random_checkpoint(Path(path))
            weights = "random lite (no trained weights found)"
            kw["detect_threshold"] = 0.0
            notes.append("trained weights missing: random-weight lite network, detection forced")
        base = PipelineConfig.from_dict({"model": path, "device": device, **kw})
        fused_in = sorted(packets + images, key=lambda x: (x[0], x[1]))
        gc.collect()  # the recording's arrays, before the phases' memory is sampled
        setup_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with RssSampler() as phases_rss:
            pipe, res = _phase(base, fused_in)
            snap = pipe.snapshot()
            del pipe
            ev_cfg = base.replace(mode="events", rate_hz=200.0)
            ev_pipe, ev_res = _phase(ev_cfg, fused_in)
            ev_snap = ev_pipe.snapshot()
            del ev_pipe, fused_in
            dark_pipe, dark_res = _phase(ev_cfg, packets)
            dark_snap = dark_pipe.snapshot()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fused, events = _report(res, snap, gt, seconds), _report(ev_res, ev_snap, gt, seconds)
    dark = _report(dark_res, dark_snap, gt, seconds)
    fused.pop("hz")
    return {"scenario": scenario, **fused, "images": snap["images"], "peak_rss_mb": peak,
            "setup_peak_rss_mb": setup_peak, "phases_peak_rss_mb": phases_rss.peak_mb,
            **{f"events_mode_{k}": v for k, v in events.items()},
            **{f"events_only_{k}": v for k, v in dark.items()},
            "event_rate_mev_s": event_rate / 1e6, **extra, "inputs_mb": inputs_mb,
            "seconds": seconds, "weights": weights, "device": device,
            "face_detector": snap["face_detector"], "params": dict(params or {}),
            "notes": notes}  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``facealign bench pipeline`` (also ``python -m training.bench.pipeline``)."""
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--scenario", choices=SCENARIOS, default="face",
                   help="face: one synthetic face; search: none, search every frame")  # fmt: skip
    p.add_argument("--seconds", type=float, default=4.0, help="seconds fed per phase")
    p.add_argument("--event-rate", type=float, default=5e6, help="events per second")
    p.add_argument("--model", default="", help="checkpoint (default: shipped weights)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bag", default=None, help="face: recording with ground truth to loop")
    p.add_argument("--seed", type=int, default=0, help="synthetic scene and noise seed")
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="node parameter, e.g. face_detector=grid (repeat)")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.bench.pipeline [--scenario search] [--json]``."""
    parser = add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    from training.replay import parse_params

    try:
        result = run_pipeline_bench(args.seconds, args.event_rate, args.model, args.device,
                                    args.scenario, args.bag, seed=args.seed,
                                    params=parse_params(args.param))  # fmt: skip
    except ValueError as exc:
        sys.stderr.write(f"bench pipeline: {exc}\n")
        return 2
    write_result(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
