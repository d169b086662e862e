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

Packets are encoded before the clock starts, so the feeder only publishes. Without trained
weights (``facealign_ros/weights/cmfa_lite.safetensors``) a random-weight lite network of the
same architecture is used and the detection threshold is 0 (the result says which weights).
Otherwise the pipeline runs with :class:`~facealign_ros.pipeline.PipelineConfig`'s defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facealign_ros.bag import make_event_packet, msg_class
from facealign_ros.events import EVENT_DTYPE, encode, make_events
from facealign_ros.face.pose import matrix_to_euler
from facealign_ros.messages import image_to_msg
from facealign_ros.pipeline import LatestOnlyWorker, Pipeline, PipelineConfig, default_model_path

W, H = 346, 260
T0 = 1_700_000_000 * 10**9
SCENARIOS = ("face", "search")
EVENTS, INFO, IMAGE = 0, 1, 2
"""Input kinds; at equal times events come first, then camera_info, then the image."""
FIRST_FRAME = 2
"""First recording frame played: earlier ones lack a full event window."""


def _random_checkpoint(path: Path) -> None:
    import torch

    from facealign_ros.face.preprocess import InputSpec
    from facealign_ros.model import CMFA, lite_config, save_checkpoint

    torch.manual_seed(0)
    spec = InputSpec()
    cfg = lite_config(num_points=70, input_size=spec.size, event_channels=spec.event_channels)
    save_checkpoint(path, CMFA(cfg), landmark_scheme="rep155_70",
                    representations=spec.representations, preprocessing=spec.to_dict())  # fmt: skip


def _packet(events: np.ndarray, seq: int, stamp_ns: int) -> Any:
    return make_event_packet(encode(events, "evt3", W, H), W, H, "evt3", seq, 0, stamp_ns)


def blob_stream(seconds: float, event_rate: float, seed: int = 0) -> tuple[list, list]:
    """``search`` scenario: ``(packets, images)``, lists of ``(feed t_ns, message)``."""
    rng = np.random.default_rng(seed)
    n_per = int(event_rate / 1000)
    packets = []
    for k in range(int(seconds * 1000)):
        cx = W / 2 + 40 * np.sin(2 * np.pi * 0.5 * k / 1000)
        n_face = int(n_per * 0.8)
        x = np.r_[rng.normal(cx, 35, n_face), rng.uniform(0, W, n_per - n_face)]
        y = np.r_[rng.normal(H / 2, 45, n_face), rng.uniform(0, H, n_per - n_face)]
        t = np.sort(rng.integers(0, 1_000_000, n_per)) + k * 1_000_000
        t -= t % 1000  # evt3 has microseconds
        ev = make_events(t, np.clip(x, 0, W - 1), np.clip(y, 0, H - 1), rng.integers(0, 2, n_per))
        packets.append(((k + 1) * 1_000_000, _packet(ev, k, T0 + int(t[0]))))
    yy, xx = np.mgrid[0:H, 0:W]
    images = []
    for k in range(int(seconds * 30)):
        t = int(k * 1e9 / 30)
        cx = W / 2 + 40 * np.sin(2 * np.pi * 0.5 * t / 1e9)
        face = (((xx - cx) / 60) ** 2 + ((yy - H / 2) / 80) ** 2 < 1) * 120 + 60
        img = np.repeat(face.astype(np.uint8)[:, :, None], 3, axis=2)
        images.append((t, image_to_msg(msg_class, img, T0 + t, "camera")))
    return packets, images


def _generate(out: str, seed: int, seconds: float) -> None:
    """Child process: write the synthetic bag and decode it into the array cache."""
    from training.data import load_bag_arrays
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    tmp = Path(f"{out}.tmp{os.getpid()}")
    write_synth_bag(tmp, SceneConfig(seed=seed, seconds=seconds, light="normal", motion="slow"))
    with contextlib.suppress(OSError):  # another run may have made it first
        tmp.rename(out)
    shutil.rmtree(tmp, ignore_errors=True)
    load_bag_arrays(out)


def synth_recording(seconds: float = 3.0, seed: int = 0) -> Path:
    """The cached synthetic bag of the ``face`` scenario (generated in a child process once)."""
    from training.synth.assets import cache_dir
    from training.synth.engine import ENGINE_VERSION

    name = f"synth_seed{seed}_{seconds:g}s_normal_slow_{W}x{H}_engine{ENGINE_VERSION}"
    out = cache_dir() / "bench_pipeline" / name
    if not out.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = multiprocessing.get_context("spawn").Process(
            target=_generate, args=(str(out), seed, seconds)
        )
        proc.start()  # a child: rendering memory stays out of this process's peak RSS
        proc.join()
        if proc.exitcode != 0 or not out.is_dir():
            raise RuntimeError(f"generating the synthetic recording {out} failed")
    return out


@dataclass(frozen=True)
class Loop:
    """One mirrored cycle of a recording (forward, then backward); times ns from its start.

    Attributes:
        events: :data:`EVENT_DTYPE`, ``t`` in ``[0, period_ns)``, sorted.
        frames: ``(F, H, W, 3)`` uint8; ``frame_t``: ``(F,)`` their times, 1/fps apart.
        gt_t: ``(G,)`` times of ground truth; ``gt_points`` ``(G, 70, 2)``, ``gt_visible``.
        pose_deg: ``(F, 3)`` ground-truth head pose (Euler, degrees) at the frames, or None.
        K: camera matrix.
        period_ns: cycle length.
    """

    events: np.ndarray
    frames: np.ndarray
    frame_t: np.ndarray
    gt_t: np.ndarray
    gt_points: np.ndarray
    gt_visible: np.ndarray
    pose_deg: np.ndarray | None
    K: np.ndarray
    period_ns: int


def mirror_loop(arrays: Any) -> Loop:
    """Fold a recording (:class:`~training.data.BagArrays`) into a seamless mirrored cycle.

    Frames ``FIRST_FRAME .. n-1`` play forward, then ``n-2 .. FIRST_FRAME+1`` backward, all
    1/fps apart; events and ground truth between the first and the last frame follow, reversed
    in time on the way back (events with their polarity flipped: the time-reversed scene).
    """
    from facealign_ros.face.pose import default_intrinsics

    stamps = np.asarray(arrays.frame_stamps, np.int64)
    a, m = int(stamps[FIRST_FRAME]), int(stamps[-1])
    span = m - a

    def unfold(t: np.ndarray, back_end: bool) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cycle times: forward ``[a, m]``, backward ``(a, m)``.

        Events (``back_end``) take ``[a, m)`` forward and ``(a, m]`` backward.
        """
        t = np.asarray(t, np.int64)
        i_f = np.flatnonzero((t >= a) & ((t < m) if back_end else (t <= m)))
        i_b = np.flatnonzero((t > a) & ((t <= m) if back_end else (t < m)))[::-1]
        return np.r_[i_f, i_b], np.r_[t[i_f] - a, 2 * span - (t[i_b] - a)]

    ev = np.array(arrays.events_between(a, m + 1))
    ei, et = unfold(ev["t"], True)
    events = ev[ei]
    events["t"] = et  # ns, not yet on the microsecond grid (face_stream rounds)
    events["p"][np.flatnonzero(et >= span)] ^= 1
    fi, frame_t = unfold(stamps, False)
    gt_stamps = np.r_[np.asarray(arrays.gt_stamps), np.asarray(arrays.hf_stamps)]
    gi, gt_t = unfold(gt_stamps, False)
    order = np.argsort(gt_t, kind="stable")
    points = np.concatenate([arrays.gt_points, arrays.hf_points])[gi][order]
    visible = np.concatenate([arrays.gt_visible, arrays.hf_visible])[gi][order]
    pose = None
    if np.array_equal(arrays.pose_stamps, stamps):
        pose = np.array([np.degrees(matrix_to_euler(R)) for R in arrays.pose_rot])[fi]
    K = arrays.K if arrays.K is not None else default_intrinsics(arrays.width, arrays.height)
    return Loop(events, np.asarray(arrays.frames)[fi], frame_t, gt_t[order], points, visible,
                pose, np.asarray(K, np.float64), 2 * span)  # fmt: skip


def face_stream(loop: Loop, seconds: float, event_rate: float, seed: int = 0) -> dict[str, Any]:
    """Inputs of the ``face`` scenario for ``seconds``, uniform background events added.

    Returns:
        ``packets`` and ``images`` (camera_info included): lists of ``(feed t_ns, kind, msg)``;
        ``gt``: a :class:`training.replay.GroundTruth` at the fed stamps; ``event_rate`` (all
        events fed per second) and ``face_event_rate`` (the recording's own).
    """
    from training.replay import GroundTruth
    from training.synth.bagout import image_msgs

    rng = np.random.default_rng(seed)
    face_rate = loop.events.size / (loop.period_ns / 1e9)
    noise_per_ms = max(event_rate - face_rate, 0.0) / 1000
    t_loop = loop.events["t"]
    packets, n_events = [], 0
    for k in range(int(seconds * 1000)):
        lo = k * 1_000_000
        parts = []
        for c in range(lo // loop.period_ns, (lo + 999_999) // loop.period_ns + 1):
            base = c * loop.period_ns
            i, j = np.searchsorted(t_loop, [lo - base, lo + 1_000_000 - base])
            part = loop.events[i:j].copy()
            part["t"] = (part["t"] + base) // 1000 * 1000  # evt3 has microseconds
            parts.append(part)
        n = rng.poisson(noise_per_ms)
        noise = make_events(lo + 1000 * rng.integers(0, 1000, n), rng.integers(0, W, n),
                            rng.integers(0, H, n), rng.integers(0, 2, n))  # fmt: skip
        ev = np.concatenate([*parts, noise]).astype(EVENT_DTYPE)
        ev = ev[np.argsort(ev["t"], kind="stable")]
        n_events += ev.size
        if ev.size:  # published once its millisecond has passed, stamped at its first event
            msg = _packet(ev, len(packets), T0 + int(ev["t"][0]))
            packets.append((lo + 1_000_000, EVENTS, msg))
    images, gt = [], GroundTruth()
    for c in range(int(seconds * 1e9) // loop.period_ns + 1):
        base = c * loop.period_ns
        for f, t in enumerate(loop.frame_t):
            if base + t < seconds * 1e9:
                img, info = image_msgs(T0 + base + int(t), loop.frames[f], loop.K)
                images += [(base + int(t), INFO, info), (base + int(t), IMAGE, img)]
                if loop.pose_deg is not None:
                    gt.poses[T0 + base + int(t)] = loop.pose_deg[f]
        for t, p, v in zip(loop.gt_t, loop.gt_points, loop.gt_visible, strict=True):
            if base + t < seconds * 1e9:
                gt.points[T0 + base + int(t)] = (np.asarray(p, np.float64), np.asarray(v))
    return {"packets": packets, "images": images, "gt": gt,
            "event_rate": n_events / seconds, "face_event_rate": face_rate}  # fmt: skip


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
    pipe.model.warm_up(config.warm_stages)  # as the node's configure
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
            "detect_runs": snap["detect_runs"], "metrics": metrics}  # fmt: skip


def run_pipeline_bench(seconds: float = 4.0, event_rate: float = 5e6, model: str = "",
                       device: str = "cpu", scenario: str = "face", bag: str | Path | None = None,
                       scene_seconds: float = 3.0, seed: int = 0,
                       threads: int | None = None) -> dict[str, Any]:  # fmt: skip
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
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose {SCENARIOS}")
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
        kw: dict[str, Any] = {} if threads is None else {"torch_threads": int(threads)}
        if not Path(path).is_file():
            path = str(Path(tmp) / "random_lite.safetensors")
            _random_checkpoint(Path(path))
            weights = "random lite (no trained weights found)"
            kw["detect_threshold"] = 0.0
            notes.append("trained weights missing: random-weight lite network, detection forced")
        base = PipelineConfig(model=path, device=device, **kw)
        fused_in = sorted(packets + images, key=lambda x: (x[0], x[1]))
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
            **{f"events_mode_{k}": v for k, v in events.items()},
            **{f"events_only_{k}": v for k, v in dark.items()},
            "event_rate_mev_s": event_rate / 1e6, **extra, "inputs_mb": inputs_mb,
            "seconds": seconds, "weights": weights, "device": device, "notes": notes}  # fmt: skip


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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.bench.pipeline [--scenario search] [--json]``."""
    parser = add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.event_rate < 0:
        sys.stderr.write("bench pipeline: --seconds > 0 and --event-rate >= 0 please\n")
        return 2
    result = run_pipeline_bench(args.seconds, args.event_rate, args.model, args.device,
                                args.scenario, args.bag, seed=args.seed)  # fmt: skip
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for key, value in result.items():
            sys.stdout.write(f"{key:<28} {value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
