"""Generation speed of the synthetic engine: seconds of data per wall-clock second."""

from __future__ import annotations

import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from training.synth.bagout import write_synth_bag
from training.synth.scene import SceneConfig


def _cpu_s() -> float:
    """CPU seconds used by this process and its reaped child processes."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_synth(
    seconds: float = 3.0,
    workers: tuple[int, ...] = (0, 2),
    motions: tuple[str, ...] = ("slow", "fast"),
    seed: int = 0,
    width: int = 346,
    height: int = 260,
    fps: float = 30.0,
) -> dict:
    """Time :func:`~training.synth.bagout.write_synth_bag` (mcap, to a temporary directory).

    Args:
        seconds: simulated duration per run, seconds.
        workers: worker-process counts to time.
        motions: motion presets to time.
        seed: scene seed.
        width: sensor width, px.
        height: sensor height, px.
        fps: RGB frame rate, Hz.

    Returns:
        ``{"runs": [{motion, workers, wall_s, realtime_factor, events, subframes, ...}],
        "cpus", "machine", "sensor", "fps", "seconds"}``; ``realtime_factor`` is seconds of
        data per wall second (process start-up and asset loading included); ``cpu_s`` is
        the CPU time of this process and its finished workers, a load-independent cost figure
        (on a shared machine the wall-clock factor depends on what else runs).
    """
    runs = []
    with tempfile.TemporaryDirectory(prefix="facealign-synth-bench-") as tmp:
        for motion in motions:
            for k in workers:
                cfg = SceneConfig(seed=seed, seconds=seconds, motion=motion, width=width,
                                  height=height, fps=fps)  # fmt: skip
                out = Path(tmp) / f"{motion}-{k}"
                t0, c0 = time.perf_counter(), _cpu_s()
                stats = write_synth_bag(out, cfg, workers=k)
                wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
                size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
                runs.append({
                    "motion": motion, "workers": k, "wall_s": round(wall, 3),
                    "realtime_factor": round(seconds / wall, 3), "cpu_s": round(cpu, 3),
                    "cpu_s_per_data_s": round(cpu / seconds, 3), "events": stats["events"],
                    "subframes": stats["subframes"], "frames": stats["frames"],
                    "bag_mb": round(size / 1e6, 2),
                })  # fmt: skip
    return {
        "runs": runs,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "sensor": f"{width}x{height}",
        "fps": fps,
        "seconds": seconds,
    }
