"""``facealign bench pipeline``: latency, memory and rates of the pipeline under real-time load.

Two phases, each feeding the pipeline in real time from one feeder thread while a
:class:`~facealign_ros.pipeline.LatestOnlyWorker` answers (exactly as the node does):

1. ``fused``: RGB at 30 Hz + evt3 packets (1 ms each) at ``event_rate`` events/s (default
   5 Mev/s: a moving face-sized blob of events plus background noise); reports the input-to-result
   latency percentiles, the fraction of frames dropped as stale, peak RSS;
2. ``events``: the same stream without images, ``rate_hz`` = 200; reports answers per second.

Packets are encoded before the clock starts, so the feeder only publishes. Without trained
weights (``facealign_ros/weights/cmfa_lite.safetensors``) a random-weight lite network of the
same architecture is used and the detection threshold is 0, so every frame runs the network as
with one tracked face (the result says which weights were used).
"""

from __future__ import annotations

import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from facealign_ros.bag import make_event_packet, msg_class
from facealign_ros.events import encode, make_events
from facealign_ros.messages import image_to_msg
from facealign_ros.pipeline import LatestOnlyWorker, Pipeline, PipelineConfig, default_model_path

W, H = 346, 260
T0 = 1_700_000_000 * 10**9


def _random_checkpoint(path: Path) -> None:
    import torch

    from facealign_ros.face.preprocess import InputSpec
    from facealign_ros.model import CMFA, lite_config, save_checkpoint

    torch.manual_seed(0)
    spec = InputSpec()
    cfg = lite_config(num_points=70, input_size=spec.size, event_channels=spec.event_channels)
    save_checkpoint(path, CMFA(cfg), landmark_scheme="rep155_70",
                    representations=spec.representations, preprocessing=spec.to_dict())  # fmt: skip


def make_stream(seconds: float, event_rate: float, seed: int = 0) -> tuple[list, list]:
    """``(packets, images)``: lists of ``(t_ns from start, message)`` in time order."""
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
        msg = make_event_packet(encode(ev, "evt3", W, H), W, H, "evt3", k, 0, T0 + int(t[0]))
        packets.append((int(t[0]), msg))
    yy, xx = np.mgrid[0:H, 0:W]
    images = []
    for k in range(int(seconds * 30)):
        t = int(k * 1e9 / 30)
        cx = W / 2 + 40 * np.sin(2 * np.pi * 0.5 * t / 1e9)
        face = (((xx - cx) / 60) ** 2 + ((yy - H / 2) / 80) ** 2 < 1) * 120 + 60
        img = np.repeat(face.astype(np.uint8)[:, :, None], 3, axis=2)
        images.append((t, image_to_msg(msg_class, img, T0 + t, "camera")))
    return packets, images


def _feed(pipe: Pipeline, worker: LatestOnlyWorker, inputs: list) -> None:
    start = time.monotonic_ns()
    for t, kind, msg in inputs:
        delay = (start + t - time.monotonic_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        if kind == 0:
            pipe.on_events(msg)
        else:
            pipe.on_image(msg)
        worker.notify()


def _phase(config: PipelineConfig, inputs: list, seconds: float) -> tuple[Pipeline, list]:
    pipe = Pipeline.from_config(config)
    results: list = []
    worker = LatestOnlyWorker(pipe, results.append)
    warm = [x for x in inputs if x[0] < 200_000_000]
    for _, kind, msg in warm:  # compile kernels and warm the network outside the timing
        (pipe.on_events if kind == 0 else pipe.on_image)(msg, 0)
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


def run_pipeline_bench(seconds: float = 4.0, event_rate: float = 5e6, model: str = "",
                       device: str = "cpu") -> dict[str, Any]:  # fmt: skip
    """Measure the pipeline (see the module docstring); returns the JSON-able result."""
    packets, images = make_stream(seconds, event_rate)
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        path = model or str(default_model_path())
        weights = path
        kw: dict[str, Any] = {}
        if not Path(path).is_file():
            path = str(Path(tmp) / "random_lite.safetensors")
            _random_checkpoint(Path(path))
            weights, kw = "random lite (no trained weights found)", {"detect_threshold": 0.0}
            notes.append("trained weights missing: random-weight lite network, detection forced")
        base = PipelineConfig(model=path, device=device, **kw)
        fused_in = sorted([(t, 0, m) for t, m in packets] + [(t, 1, m) for t, m in images],
                          key=lambda x: (x[0], x[1]))  # fmt: skip
        pipe, res = _phase(base, fused_in, seconds)
        snap = pipe.snapshot()
        lat = np.array([r.latency_ms for r in res])
        images_in = max(snap["images"], 1)
        ev_pipe, ev_res = _phase(base.replace(mode="events", rate_hz=200.0),
                                 [(t, 0, m) for t, m in packets], seconds)  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "compute_p50_ms": snap["compute_p50_ms"],
        "peak_rss_mb": peak,
        "events_mode_hz": len(ev_res) / seconds,
        "dropped_fraction": snap["drops"]["stale"] / images_in,
        "results": len(res),
        "faces": int(sum(r.has_face for r in res)),
        "images": snap["images"],
        "event_rate_mev_s": event_rate / 1e6,
        "events_mode_compute_p50_ms": ev_pipe.snapshot()["compute_p50_ms"],
        "seconds": seconds,
        "weights": weights,
        "device": device,
        "notes": notes,
    }
