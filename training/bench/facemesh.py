"""Per-frame inference latency side by side: MediaPipe face mesh (the design's reference) vs ours.

``python -m training.bench.facemesh [--json]`` takes ``--frames`` frames with a face (346x260,
normal light: a synthetic test bag under ``data/synth`` when present, else a freshly generated
one) and times, in interleaved rounds (ours, MediaPipe, ours, MediaPipe, ...; round 0 is a
discarded warm-up):

* ``ours_pipeline``: the node's per-frame work for a tracked face, fused: event window, crop,
  representations, the network (shipped lite weights, 1 torch thread), landmark mapping,
  smoothing and head pose (:class:`~facealign_ros.pipeline.align.FaceStage` with the pipeline's
  default settings; the track is started from the ground truth of an untimed priming frame);
* ``ours_forward``: :meth:`~facealign_ros.model.FaceAligner.predict` alone on prebuilt inputs;
* ``mediapipe_video`` / ``mediapipe_static``: ``FaceMesh.process`` with ``static_image_mode``
  False (tracking, as on video) / True (detection on every frame), ``refine_landmarks=True``,
  ``max_num_faces=1``, timed inside the teacher's own Python (:mod:`.facemesh_worker`), so the
  pipe transfer is excluded.

MediaPipe 0.10.21 needs ``numpy<2`` and lives in the teacher environment of ``facealign label``
(:func:`training.label.teacher.resolve_python`; ``facealign label --install-teacher``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facealign_ros.cli import positive_int
from training.bench.facemesh_worker import PRIME, MeshWorker, MeshWorkerError
from training.label.teacher import TeacherMissingError, resolve_python

DEFAULT_BAG = Path(__file__).resolve().parents[2] / "data" / "synth" / "test_950004_normal_slow"
FIRST_FRAME = 3
"""First bag frame used: earlier ones lack a full event window."""
ORDER = ("ours_pipeline", "mediapipe_video", "ours_forward", "mediapipe_static")
"""Run order within a round: ours and MediaPipe alternate."""
LABELS = {
    "ours_pipeline": "ours: node per-frame work, tracked face, fused",
    "ours_forward": "ours: network forward alone (fused)",
    "mediapipe_video": "MediaPipe face mesh, static_image_mode=False",
    "mediapipe_static": "MediaPipe face mesh, static_image_mode=True",
}
RATIOS = (
    ("ours_pipeline", "mediapipe_video"),
    ("ours_pipeline", "mediapipe_static"),
    ("ours_forward", "mediapipe_video"),
    ("ours_forward", "mediapipe_static"),
)
"""Ratios reported, ``(a, b)``: median ms of ``a`` / median ms of ``b`` (> 1: ``a`` is slower)."""


@dataclass(frozen=True)
class Frames:
    """Frames with a face and the events around them (ROS time, ns).

    Attributes:
        rgb: ``(N, H, W, 3)`` uint8 frames registered to the event sensor.
        stamps: ``(N,)`` int64 frame stamps.
        events: event array covering every frame's window.
        gt_points: ``(N, 70, 2)`` ground-truth REP-155 landmarks, sensor pixels.
        source: where the frames came from.
    """

    rgb: np.ndarray
    stamps: np.ndarray
    events: np.ndarray
    gt_points: np.ndarray
    source: str

    @property
    def size(self) -> tuple[int, int]:
        """Sensor ``(width, height)``."""
        return int(self.rgb.shape[2]), int(self.rgb.shape[1])


def _from_arrays(arrays: Any, n: int, source: str) -> Frames:
    stop = FIRST_FRAME + n
    if arrays.frames.shape[0] < stop or not np.array_equal(arrays.gt_stamps, arrays.frame_stamps):
        raise ValueError(f"{source}: needs {stop} frames with ground truth at every frame")
    stamps = np.array(arrays.frame_stamps[FIRST_FRAME:stop], np.int64)
    t0 = int(stamps[0]) - 10**9  # a generous margin before the first window
    return Frames(
        np.array(arrays.frames[FIRST_FRAME:stop]),
        stamps,
        np.array(arrays.events_between(t0, int(stamps[-1]) + 1)),
        np.array(arrays.gt_points[FIRST_FRAME:stop], np.float64),
        source,
    )


def load_frames(n: int, bag: str | os.PathLike[str] | None = None, seed: int = 0) -> Frames:
    """``n`` frames from ``bag`` (default :data:`DEFAULT_BAG` if present) or a synthetic bag."""
    from training.data import load_bag_arrays

    path = Path(bag) if bag is not None else DEFAULT_BAG
    if bag is not None or path.is_dir():
        return _from_arrays(load_bag_arrays(path), n, str(path))
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    scene = SceneConfig(seed=seed, seconds=(FIRST_FRAME + n + 2) / 30.0, light="normal")
    with tempfile.TemporaryDirectory(prefix="facealign-facemesh-") as tmp:
        write_synth_bag(Path(tmp) / "bag", scene)
        arrays = load_bag_arrays(Path(tmp) / "bag", cache=False)
        return _from_arrays(arrays, n, f"synthetic scene seed {seed}, normal light, slow")


class OursTimer:
    """Our model on the frames, in this process, one torch thread, CPU."""

    def __init__(self, frames: Frames, model: str = "", threads: int = 1) -> None:
        from facealign_ros.face.crop import box_from_landmarks, crop_affine
        from facealign_ros.face.preprocess import event_input, rgb_input
        from facealign_ros.pipeline import PipelineConfig, default_model_path
        from facealign_ros.pipeline.align import FaceStage
        from facealign_ros.pipeline.health import PipelineStats
        from facealign_ros.pipeline.model import load_model

        self.frames = frames
        self.model_path = model or str(default_model_path())
        self.runner = load_model(self.model_path, "cpu", threads)
        self.config = PipelineConfig(model=self.model_path, device="cpu", torch_threads=threads)
        self.stage = FaceStage(self.config, self.runner, PipelineStats(), keep_debug=False)
        spec, (w, h) = self.runner.spec, frames.size
        ev, im = [], []
        for i, t in enumerate(frames.stamps):
            A = crop_affine(
                box_from_landmarks(frames.gt_points[i], None, spec.box_scale), spec.size
            )
            ev.append(event_input(self.window(i), A, spec, w, h, int(t)))
            im.append(rgb_input(frames.rgb[i], A, spec))
        self.inputs = np.stack(ev), np.stack(im)  # (N, C, S, S) each

    def window(self, i: int) -> np.ndarray:
        """The event window of frame ``i`` as the pipeline cuts it (newest events if too many)."""
        t = self.frames.events["t"]
        end = int(self.frames.stamps[i])
        lo, hi = np.searchsorted(t, [end - self.runner.spec.window_ns, end])
        return self.frames.events[max(lo, hi - self.config.max_window_events) : hi]

    def pipeline_round(self, prime: int = PRIME) -> dict[str, Any]:
        """One round of the node's per-frame work; ``tracked``: the face was tracked going in."""
        f, stage = self.frames, self.stage
        stage.reset()
        stage.tracker.start(f.gt_points[0], np.ones(len(f.gt_points[0])), int(f.stamps[0]))

        def one(i: int) -> dict[str, bool]:
            tracked = stage.tracker.tracking
            events = self.window(i)
            res = stage.answer(int(f.stamps[i]), events, f.rgb[i], f.size, "fused", "camera")
            return {"tracked": tracked, "faces": res.has_face}

        return _timed_round(one, len(f.stamps), prime)

    def forward_round(self, prime: int = PRIME) -> dict[str, Any]:
        """One round of the network forward alone (all stages, one crop per frame)."""
        ev, im = self.inputs
        predict = self.runner.aligner.predict

        def one(i: int) -> dict[str, bool]:
            predict(ev[i], im[i])
            return {}

        return _timed_round(one, len(ev), prime)


def _timed_round(one: Callable[[int], dict[str, bool]], n: int, prime: int) -> dict[str, Any]:
    """Frames ``prime..n-1`` timed one by one; ``one(i)`` returns per-frame flags to collect."""
    for i in range(prime):
        one(i)
    out: dict[str, Any] = {"ms": []}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(prime, n):
        t0 = time.perf_counter()
        flags = one(i)
        out["ms"].append((time.perf_counter() - t0) * 1e3)
        for key, value in flags.items():
            out.setdefault(key, []).append(bool(value))
    out.update(cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0)
    return out


def interleave(fns: dict[str, Callable[[], dict[str, Any]]], rounds: int) -> dict[str, list]:
    """Run ``fns`` in order, ``rounds + 1`` times; the first (warm-up) round is discarded."""
    runs: dict[str, list] = {name: [] for name in fns}
    for r in range(rounds + 1):
        for name, fn in fns.items():
            out = fn()
            if r:
                runs[name].append(out)
    return runs


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per contender: median, p90, mean and min ms per frame, round medians, CPU/wall; ratios.

    Args:
        runs: name -> rounds, each ``{"ms": [...], "cpu_s": s, "wall_s": s}`` plus an optional
            ``faces`` or ``tracked`` list of booleans.

    Returns:
        ``{"contenders": {name: figures}, "ratios": {...}, "ratios_per_round": {...}}``;
        a ratio ``a_over_b`` is median ms of ``a`` / median ms of ``b`` (> 1: ``a`` is slower),
        ``ratios_per_round`` the median over rounds of the same ratio within each round.
    """
    out: dict[str, Any] = {}
    for name, rounds in runs.items():
        ms = np.concatenate([np.asarray(r["ms"], float) for r in rounds])
        cpu = sum(r["cpu_s"] for r in rounds)
        wall = sum(r["wall_s"] for r in rounds)
        fig: dict[str, Any] = {
            "median_ms": float(np.median(ms)),
            "p90_ms": float(np.percentile(ms, 90)),
            "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min()),
            "frames": int(ms.size),
            "rounds": len(rounds),
            "round_medians_ms": [float(np.median(r["ms"])) for r in rounds],
            "cpu_per_wall": cpu / wall if wall > 0 else 0.0,
        }
        for flag in ("faces", "tracked"):
            if flag in rounds[0]:
                fig[f"{flag}_fraction"] = float(np.mean(np.concatenate([r[flag] for r in rounds])))
        out[name] = fig
    ratios, paired = {}, {}
    for a, b in RATIOS:
        if a in out and b in out:
            key = f"{a}_over_{b}"
            ratios[key] = out[a]["median_ms"] / out[b]["median_ms"]
            pairs = zip(out[a]["round_medians_ms"], out[b]["round_medians_ms"], strict=True)
            paired[key] = statistics.median(x / y for x, y in pairs)
    return {"contenders": out, "ratios": ratios, "ratios_per_round": paired}


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_facemesh_bench(
    frames: int = 60,
    rounds: int = 5,
    teacher_python: str | None = None,
    bag: str | None = None,
    model: str = "",
    seed: int = 0,
) -> dict[str, Any]:
    """Measure everything (see the module docstring); returns the JSON-able result.

    Raises:
        TeacherMissingError: no teacher Python (the message names the install command).
        MeshWorkerError: the timing worker failed.
        facealign_ros.pipeline.ModelLoadError: the weights cannot be loaded.
    """
    import cv2
    import torch

    import facealign_ros

    python = resolve_python(teacher_python)
    load_before = os.getloadavg()
    data = load_frames(frames + PRIME, bag, seed)
    ours = OursTimer(data, model, threads=1)
    with MeshWorker(python) as mesh:
        mesh.send_frames(data.rgb)
        runs = interleave(
            {
                "ours_pipeline": ours.pipeline_round,
                "mediapipe_video": lambda: mesh.run(static=False),
                "ours_forward": ours.forward_round,
                "mediapipe_static": lambda: mesh.run(static=True),
            },
            rounds,
        )
    result = summarise(runs)
    result.update(
        frames=frames,
        rounds=rounds,
        image=list(data.size),
        source=data.source,
        weights=ours.model_path,
        versions={
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "facealign_ros": facealign_ros.__version__,
            "mediapipe": mesh.info.get("mediapipe"),
            "teacher_numpy": mesh.info.get("numpy"),
            "teacher_python": mesh.info.get("python"),
        },
        threads={
            "torch": torch.get_num_threads(),
            "opencv": cv2.getNumThreads(),
            "mediapipe_process": max(r["threads"] for r in runs["mediapipe_video"]),
        },
        cpu=_cpu_model(),
        cpu_count=os.cpu_count(),
        loadavg_before=list(load_before),
        loadavg_after=list(os.getloadavg()),
    )
    return result


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`run_facemesh_bench`'s result."""
    w, h = result["image"]
    lines = [
        f"{result['frames']} frames {w}x{h} x {result['rounds']} interleaved rounds "
        f"({result['source']}); {result['cpu']}, load {result['loadavg_before'][0]:.1f}"
        f" -> {result['loadavg_after'][0]:.1f}",
        f"{'contender':<48} {'median ms':>9} {'p90 ms':>7} {'faces':>6} {'CPU/wall':>8}",
    ]
    for name in ORDER:
        c = result["contenders"][name]
        face = f"{c['faces_fraction']:.0%}" if "faces_fraction" in c else "-"
        lines.append(
            f"{LABELS[name]:<48} {c['median_ms']:>9.2f} {c['p90_ms']:>7.2f} {face:>6} "
            f"{c['cpu_per_wall']:>8.2f}"
        )
    for key, value in result["ratios"].items():
        lines.append(f"{key}: {value:.2f} (per round: {result['ratios_per_round'][key]:.2f})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m training.bench.facemesh``."""
    p = argparse.ArgumentParser(
        prog="python -m training.bench.facemesh", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--frames", type=positive_int, default=60, help="timed frames per round")
    p.add_argument("--rounds", type=positive_int, default=5, help="timed rounds (after a warm-up)")
    p.add_argument(
        "--bag",
        default=None,
        help=f"bag to take frames from (default {DEFAULT_BAG} "
        "if present, else a generated synthetic bag)",
    )
    p.add_argument("--model", default="", help="checkpoint (default: the shipped lite weights)")
    p.add_argument(
        "--teacher-python",
        default=None,
        help="Python with mediapipe 0.10.21 (default: $FACEALIGN_TEACHER_PYTHON, "
        "else the venv of `facealign label --install-teacher`)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of a generated synthetic bag")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2: teacher missing, 1: the benchmark failed)."""
    args = build_parser().parse_args(argv)
    try:
        result = run_facemesh_bench(
            args.frames, args.rounds, args.teacher_python, args.bag, args.model, args.seed
        )
    except TeacherMissingError as err:
        sys.stderr.write(
            f"the face-mesh benchmark needs MediaPipe from the teacher environment.\n{err}\n"
        )
        return 2
    except (MeshWorkerError, RuntimeError, ValueError, OSError) as err:
        sys.stderr.write(f"face-mesh benchmark failed: {err}\n")
        return 1
    sys.stdout.write((json.dumps(result) if args.json else format_table(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
