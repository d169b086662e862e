"""``facealign replay``: run the node's exact pipeline over a rosbag2 and record what it publishes.

The input bag is only read. Messages are fed in log-time order to
:class:`~facealign_ros.pipeline.Pipeline` (the bag's log time is the pipeline's input clock, so a
replay is deterministic), every ready target is answered at once (no stale drops: offline, the
CPU's speed does not change the output), and the messages of
:func:`~facealign_ros.results.result_to_messages` are written to a new bag with the private
namespace ``/facealign``. When the bag carries ground truth (``/facealign/gt/landmarks`` at the
frames, ``/facealign/gt/landmarks_hf`` at 1 kHz, ``/facealign/gt/head_pose``), results are matched
to it by stamp and scored with :mod:`training.metrics` (NME by inter-ocular distance, FR@0.1,
AUC@0.1, head-pose MAE).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facealign_ros import topics
from facealign_ros.bag import BagReader, BagWriter, msg_class, within
from facealign_ros.cli import positive_float
from facealign_ros.face.landmarks import REP155_70
from facealign_ros.face.pose import matrix_to_euler
from facealign_ros.messages import landmarks_from_msg, pose_from_msg, stamp_ns
from facealign_ros.pipeline import MODES, FaceResult, Pipeline, PipelineConfig
from facealign_ros.pipeline.inputs import restamp_unstamped as restamp
from facealign_ros.results import REPLAY_PRIVATE_NS, result_to_messages
from training import metrics

GT_TOPICS = (topics.GT_LANDMARKS, topics.GT_LANDMARKS_HF)
MATCH_NS = 500_000
"""A result is scored against ground truth stamped within this distance, ns."""


class GroundTruth:
    """Ground-truth landmarks and poses collected from a bag, looked up by stamp."""

    def __init__(self) -> None:
        self.points: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.poses: dict[int, np.ndarray] = {}
        self._sorted: np.ndarray | None = None

    def add(self, topic: str, msg: Any) -> None:
        """Store one ground-truth message.

        Raises:
            ValueError: NaN or infinite values (they would score as no failure).
        """
        if topic == topics.GT_HEAD_POSE:
            R, _ = pose_from_msg(msg)
            euler = np.degrees(matrix_to_euler(R))
            if not np.isfinite(euler).all():
                raise ValueError("non-finite head pose")
            self.poses[stamp_ns(msg)] = euler
        else:
            points, visible = landmarks_from_msg(msg)
            if not np.isfinite(points).all():
                raise ValueError("non-finite landmarks")
            self.points[stamp_ns(msg)] = (points, visible)
            self._sorted = None

    def find(self, stamp: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Ground truth ``(points (70, 2) px, visible (70,))`` within :data:`MATCH_NS`."""
        if not self.points:
            return None
        if self._sorted is None:
            self._sorted = np.array(sorted(self.points), dtype=np.int64)
        i = int(np.searchsorted(self._sorted, stamp))
        near = [j for j in (i - 1, i) if 0 <= j < self._sorted.size]
        j = min(near, key=lambda k: abs(int(self._sorted[k]) - stamp))  # type: ignore[index]
        best = int(self._sorted[j])
        return self.points[best] if abs(best - stamp) <= MATCH_NS else None


def score(results: list[FaceResult], gt: GroundTruth) -> dict[str, Any] | None:
    """Metrics of ``results`` against ``gt`` (None when the bag has no ground truth).

    Returns:
        ``nme``, ``fr10``, ``auc10`` over results with a face matched to ground truth,
        ``coverage`` (share of matched targets that had a face; a missing face counts as a
        failure in ``fr10_all``), ``count``, and ``pose_mae_deg`` where poses exist.
    """
    if not gt.points:
        return None
    preds, gts, pose_p, pose_g, missing = [], [], [], [], 0
    for r in results:
        m = gt.find(r.stamp_ns)
        if m is None:
            continue
        if not r.has_face:
            missing += 1
            continue
        preds.append(r.landmarks)
        gts.append(m[0])
        g = gt.poses.get(r.stamp_ns)
        if g is not None:
            pose_g.append(g)
            pose_p.append(r.pose.euler_deg if r.pose is not None else np.full(3, np.nan))
    n = len(preds)
    if n:
        g = np.asarray(gts)
        nmes = metrics.nme_per_sample(
            np.asarray(preds), g, metrics.normalizing_distance(g, REP155_70)
        )
    else:
        nmes = np.zeros(0)
    out: dict[str, Any] = metrics.summarize(nmes)
    out["coverage"] = n / (n + missing) if n + missing else float("nan")
    out["fr10_all"] = (
        float((np.sum(nmes > 0.1) + missing) / (n + missing)) if n + missing else float("nan")
    )
    out["pose_mae_deg"] = (
        metrics.pose_mae(np.asarray(pose_p), np.asarray(pose_g)) if pose_p else None
    )
    return metrics.finite_or_none(out)  # type: ignore[return-value]


def replay(
    in_bag: str | Path,
    out_bag: str | Path,
    config: PipelineConfig,
    events_topic: str = topics.EVENTS,
    image_topic: str = topics.IMAGE,
    info_topic: str = topics.CAMERA_INFO,
    progress: bool = False,
    keep_debug: bool = False,
    on_result: Callable[[FaceResult], None] | None = None,
    pipeline: Pipeline | None = None,
    restamp_unstamped: bool = False,
) -> dict[str, Any]:
    """Replay ``in_bag`` through the pipeline into ``out_bag``; return the summary.

    Args:
        in_bag: input rosbag2 (read only).
        out_bag: output bag directory (must not exist).
        config: pipeline settings (``mode``, ``rate_hz``, ``model``, ...).
        events_topic: event packets topic.
        image_topic: image topic.
        info_topic: camera info topic.
        progress: show a progress bar on stderr.
        keep_debug: keep inputs in the results (for videos).
        on_result: called with every result (e.g. a video writer).
        pipeline: a ready pipeline (default: built from ``config``).
        restamp_unstamped: event packets and images whose header stamp is 0 (recorded from a
            driver that does not stamp) take their log (receive) time in the bag instead of
            being dropped as ``unstamped``; counted as ``restamped`` in the summary.

    Returns:
        Summary: counts per output topic, results, faces, ``face_rate`` (faces / results;
        None without results), pipeline counters, compute time percentiles, wall seconds, and
        ``metrics`` (None without ground truth).

    Raises:
        facealign_ros.bag.BagError: unreadable input, existing output.
        facealign_ros.pipeline.ModelLoadError: bad checkpoint.
        ValueError: an output inside the input bag, or a bag without the input topics.
    """
    t_wall = time.perf_counter()
    if within(out_bag, in_bag):
        raise ValueError(f"output {out_bag} lies inside the input bag {in_bag}, which is only read")
    if pipeline is None:
        pipeline = Pipeline.from_config(config, keep_debug=keep_debug)
        pipeline.warm_up()  # as the node: no tracing in the timings
    pipe = pipeline
    gt, results, counts, gt_bad, restamped = GroundTruth(), [], {}, {}, 0
    with BagReader(in_bag) as reader:
        have = reader.topics
        image_topic = topics.image_topic_in(image_topic, have)  # raw, else JPEG/PNG frames
        inputs = [t for t in (events_topic, image_topic, info_topic) if t in have]
        if events_topic not in have and image_topic not in have:
            raise ValueError(f"{in_bag}: neither {events_topic} nor {image_topic} is in the bag")
        wanted = inputs + [t for t in (*GT_TOPICS, topics.GT_HEAD_POSE) if t in have]
        total = sum(have[t].count for t in wanted)
        bar = _progress(total) if progress else None
        with BagWriter(out_bag) as writer:

            def emit(r: FaceResult, log_ns: int) -> None:
                results.append(r if keep_debug else _strip(r))
                if on_result is not None:
                    on_result(r)
                for out in result_to_messages(msg_class, r, REPLAY_PRIVATE_NS):
                    if out.topic not in writer.topics:
                        writer.add_topic(out.topic, out.typename)
                    writer.write(out.topic, max(log_ns, r.stamp_ns), out.msg)
                    counts[out.topic] = counts.get(out.topic, 0) + 1

            last = 0
            for topic, log_ns, msg in reader.messages(wanted):
                last = log_ns
                if restamp_unstamped and topic in (events_topic, image_topic):
                    restamped += restamp(msg, log_ns)
                if topic == events_topic:
                    pipe.on_events(msg, log_ns)
                elif topic == image_topic:
                    pipe.on_image(msg, log_ns)
                elif topic == info_topic:
                    pipe.on_camera_info(msg)
                elif not _add_ground_truth(gt, topic, msg):
                    gt_bad[topic] = gt_bad.get(topic, 0) + 1
                while (r := pipe.step(log_ns)) is not None:
                    emit(r, log_ns)
                if bar is not None:
                    bar.update(1)
            while (r := pipe.step(last, flush=True)) is not None:
                emit(r, last)
            if bar is not None:
                bar.close()
    snap = pipe.snapshot()
    return {
        "input": str(in_bag),
        "output": str(out_bag),
        "image_topic": image_topic,
        "mode": config.mode,
        "results": len(results),
        "faces": (faces := sum(r.has_face for r in results)),
        # share of answers with a face; in a recording without a face, the false-face rate
        "face_rate": faces / len(results) if results else None,
        "topics": dict(sorted(counts.items())),
        "compute_p50_ms": snap["compute_p50_ms"],
        "compute_p99_ms": snap["compute_p99_ms"],
        "pipeline": snap,
        "wall_s": time.perf_counter() - t_wall,
        "metrics": score(results, gt),
        "ground_truth_skipped": dict(sorted(gt_bad.items())),
        "restamped": restamped,
    }


def _add_ground_truth(gt: GroundTruth, topic: str, msg: Any) -> bool:
    """Store one ground-truth message; False (it is skipped) when it is not one.

    A ground-truth topic of another type, or a malformed message, must not stop a replay: the
    pipeline's output does not depend on it; the summary counts what was skipped.
    """
    try:
        gt.add(topic, msg)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        return False
    return True


def _strip(r: FaceResult) -> FaceResult:
    from dataclasses import replace

    return replace(r, debug=None) if r.debug is not None else r


class _Bar:
    """Minimal stderr progress bar (used when tqdm is not installed)."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self._shown = max(total, 1), 0, -1

    def update(self, k: int) -> None:
        self.n += k
        pct = 100 * self.n // self.total
        if pct != self._shown:
            self._shown = pct
            sys.stderr.write(f"\rreplay {pct:3d}% ({self.n}/{self.total} messages)")

    def close(self) -> None:
        sys.stderr.write("\n")


def _progress(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return _Bar(total)
    return tqdm(total=total, unit="msg", desc="replay", file=sys.stderr)


def add_replay_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``replay`` to the ``facealign`` sub-command parsers."""
    p = sub.add_parser("replay", help="run the node pipeline over a bag, write its outputs")
    p.add_argument("in_bag", type=Path, help="input rosbag2 (mcap or sqlite3); never modified")
    p.add_argument("-o", "--output", type=Path, required=True, help="output bag (must not exist)")
    p.add_argument("--mode", choices=MODES, default="fused")
    p.add_argument("--rate", type=float, default=100.0, help="events-mode answer rate, Hz")
    p.add_argument("--model", default="", help="checkpoint (default: the shipped lite weights)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--events-topic", default=topics.EVENTS)
    p.add_argument("--image-topic", default=topics.IMAGE)
    p.add_argument("--camera-info-topic", default=topics.CAMERA_INFO)
    p.add_argument("--smoothing", action="store_true", help="One-Euro smoothing of landmarks")
    p.add_argument("--detect-threshold", type=float, help="face search threshold (node parameter)")
    p.add_argument("--track-threshold", type=float, help="keep-tracking threshold (node parameter)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other node parameter (config/facealign.yaml), e.g. warm_start=false",
    )
    p.add_argument("--restamp-unstamped", action="store_true",
                   help="event packets and images stamped 0 (a driver that does not stamp) "
                        "take their receive time in the bag instead of being dropped")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """Node parameters given as ``--param`` items -> dict (``replay``, ``bench``).

    Each item is ``KEY=VALUE`` or several joined by commas (``a=1,b=2``); values are parsed as
    YAML (``false``, ``3``, ``[1, 0, ...]``: commas inside a value do not separate parameters).

    Raises:
        ValueError: an item without ``KEY=``, or a value that is not valid YAML.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        for part in re.split(r",(?=\s*[A-Za-z_]\w*=)", item):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--param {part!r}: expected KEY=VALUE")
            try:
                out[key.strip()] = yaml.safe_load(value)
            except yaml.YAMLError as exc:  # e.g. an unclosed bracket
                raise ValueError(f"--param {part!r}: the value is not valid YAML") from exc
    return out


def _config(args: argparse.Namespace) -> PipelineConfig:
    extra = parse_params(getattr(args, "param", []))
    for k in ("detect_threshold", "track_threshold"):
        if getattr(args, k, None) is not None:
            extra[k] = getattr(args, k)
    base = {"mode": args.mode, "rate_hz": args.rate, "model": args.model,
            "device": args.device, "smoothing": args.smoothing}  # fmt: skip
    return PipelineConfig.from_dict({**base, **extra})


def print_summary(summary: dict[str, Any]) -> None:
    """Human-readable summary on stdout (results, topics, metrics table)."""
    w = sys.stdout.write
    w(f"replayed {summary['input']} -> {summary['output']} ({summary['mode']}): "
      f"{summary['results']} results, {summary['faces']} with a face, "
      f"{summary['wall_s']:.1f} s\n")  # fmt: skip
    for topic, n in summary["topics"].items():
        w(f"  {topic:<40} {n}\n")
    if summary.get("restamped"):
        w(f"  {summary['restamped']} unstamped messages took their receive time in the bag\n")
    elif summary["pipeline"].get("drops", {}).get("unstamped"):
        w(f"  {summary['pipeline']['drops']['unstamped']} messages stamped 0 were dropped: "
          "--restamp-unstamped gives them their receive time\n")  # fmt: skip
    for topic, n in summary.get("ground_truth_skipped", {}).items():
        w(f"  skipped {n} ground-truth messages on {topic} (not the expected type or malformed)\n")
    m = summary.get("metrics")
    if m:
        w("metric     value\n")
        for k in ("count", "nme", "fr10", "auc10", "coverage", "fr10_all"):
            v = m.get(k)
            w(f"{k:<10} {'n/a' if v is None else f'{v:.4f}'}\n")
        if m.get("pose_mae_deg"):
            w(f"pose MAE   {m['pose_mae_deg']['mean']:.2f} deg\n")
        w(f"metrics saved to {summary.get('metrics_file')}\n")


def run_replay(args: argparse.Namespace) -> int:
    """Run ``facealign replay``; returns the exit code (2 on a bad bag or model)."""
    from facealign_ros.bag import BagError
    from facealign_ros.face.detector import DetectorError
    from facealign_ros.pipeline import ModelLoadError

    try:
        summary = replay(args.in_bag, args.output, _config(args), args.events_topic,
                         args.image_topic, args.camera_info_topic,
                         progress=not args.no_progress and not args.json,
                         restamp_unstamped=getattr(args, "restamp_unstamped", False))  # fmt: skip
    except (BagError, ModelLoadError, DetectorError, ValueError) as exc:
        sys.stderr.write(f"facealign replay: {exc}\n")
        return 2
    if summary["metrics"] is not None:
        path = Path(str(args.output) + ".metrics.json")
        path.write_text(json.dumps(summary["metrics"], indent=2) + "\n")
        summary["metrics_file"] = str(path)
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        print_summary(summary)
    return 0


def add_demo_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to the ``facealign`` sub-command parsers."""
    from training.synth.options import RGB_CAMERAS

    p = sub.add_parser("demo", help="synthetic bag -> replay -> output bag, MP4, metrics")
    p.add_argument("--light", choices=("normal", "low", "dark"), default="normal")
    p.add_argument(
        "--rgb-camera",
        choices=tuple(RGB_CAMERAS),
        default="large-pixel",
        help="RGB sensor of the synthetic bag (small-pixel: a noisy frame in the dark)",
    )
    p.add_argument("--mode", choices=MODES, default="fused")
    p.add_argument("--seconds", type=positive_float, default=2.0, help="length of the recording")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="", help="checkpoint (default: the shipped lite weights)")
    p.add_argument("-o", "--out-dir", type=Path, default=Path("facealign_demo"))
    p.add_argument("--json", action="store_true", help="print one JSON summary")
    return p


def run_demo(args: argparse.Namespace) -> int:
    """Run ``facealign demo``: writes ``input_bag``, ``output_bag``, ``annotated.mp4``, metrics."""
    import cv2

    from facealign_ros.pipeline.draw import render_result
    from training.synth.bagout import write_synth_bag
    from training.synth.camera import rgb_camera
    from training.synth.engine import SensorConfig
    from training.synth.scene import SceneConfig

    out = args.out_dir / f"{args.light}_{args.mode}_seed{args.seed}_{time.strftime('%H%M%S')}"
    in_bag, out_bag, video = out / "input_bag", out / "output_bag", out / "annotated.mp4"
    out.mkdir(parents=True, exist_ok=True)
    scene = SceneConfig(seed=args.seed, seconds=args.seconds, light=args.light)
    write_synth_bag(in_bag, scene, SensorConfig(rgb=rgb_camera(args.rgb_camera, scene.fps)))
    writer: list[Any] = []

    def frame(r: FaceResult) -> None:
        img = render_result(r)
        if not writer:
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            writer.append(cv2.VideoWriter(str(video), fourcc, 30.0, (img.shape[1], img.shape[0])))
        writer[0].write(img[:, :, ::-1])

    cfg = PipelineConfig(mode=args.mode, model=args.model, rate_hz=30.0)
    try:
        summary = replay(in_bag, out_bag, cfg, keep_debug=True, on_result=frame)
    except Exception as exc:  # noqa: BLE001 - report any failure as one line
        sys.stderr.write(f"facealign demo: {exc}\n")
        return 2
    finally:
        if writer:
            writer[0].release()
    summary["metrics_file"] = str(out / "metrics.json")
    (out / "metrics.json").write_text(json.dumps(summary["metrics"], indent=2) + "\n")
    summary.update(video=str(video), input_bag=str(in_bag))
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        print_summary(summary)
        sys.stdout.write(f"input bag  {in_bag}\noutput bag {out_bag}\nvideo      {video}\n")
    return 0
