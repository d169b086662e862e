"""Training-sample throughput: cropped, augmented samples per second from a synthetic bag."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from facealign_ros.face.preprocess import InputSpec
from training.data import AugmentConfig, BagWindowDataset, load_bag_arrays


def bench_samples(seconds: float = 2.0, seed: int = 0, hf_per_frame: int = 1) -> dict:
    """Samples/s of :class:`~training.data.BagWindowDataset` (one process, augmentation on).

    A ``seconds``-long synthetic bag is generated into a temporary directory, decoded (timed
    separately: the one-off cost of a bag, cached afterwards) and every sample is built once.
    """
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    with tempfile.TemporaryDirectory(prefix="facealign-data-bench-") as tmp:
        bag = Path(tmp) / "bag"
        write_synth_bag(bag, SceneConfig(seed=seed, seconds=seconds, light="low"))
        t0 = time.perf_counter()
        arrays = load_bag_arrays(bag, cache=False)
        decode_s = time.perf_counter() - t0
        spec = InputSpec()
        ds = BagWindowDataset([arrays], spec, AugmentConfig(), seed=seed, hf_per_frame=hf_per_frame)
        t0 = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        wall = time.perf_counter() - t0
    return {
        "samples": len(ds),
        "samples_per_s": round(len(ds) / wall, 1),
        "bag_decode_s": round(decode_s, 3),
        "events": int(arrays.events.size),
        "input": spec.to_dict(),
    }
