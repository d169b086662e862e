"""How a model's NME moves when its RGB input gets as dark as a small-pixel camera's.

The synthetic engine's darkest RGB still holds ~25 electrons per pixel (its camera has large
pixels), so the RGB branch never fails there. This bench takes the *normal-light* samples of
labelled bags and re-exposes every RGB crop at a fixed mean signal of ``--electrons`` per
pixel (:func:`training.data.low_light.reexpose`: shot + read noise, gain, 8 bits; seeded per
sample), then runs the model fused, event-only and RGB-only. Events are left as recorded (an
event camera's contrast threshold does not depend on the exposure; its low-light noise is not
modelled here). The ``recorded`` row is the crops as recorded.

    python -m training.bench.low_light_rgb --bags 'data/synth_more/test_*' --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

MODES = ("fused", "event", "rgb")


class ReexposedRGB:
    """``base`` restricted to ``indices``, each RGB crop re-exposed at ``electrons`` (a dataset).

    Args:
        base: map dataset following the training contract (``rgb``: ``(3, S, S)`` in [0, 1]).
        indices: samples of ``base`` to keep.
        electrons: mean electrons per pixel; None keeps the crops as they are.
        seed: noise seed (sample ``k`` draws from ``(seed, k)``).
    """

    def __init__(
        self, base: Any, indices: Sequence[int], electrons: float | None, seed: int = 0
    ) -> None:
        self.base, self.indices = base, [int(i) for i in indices]
        self.electrons, self.seed = electrons, int(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, Any]:
        from training.data.low_light import reexpose

        sample = dict(self.base[self.indices[k]])
        if self.electrons is not None:
            rng = np.random.default_rng((self.seed, int(k)))
            sample["rgb"] = reexpose(np.asarray(sample["rgb"]), self.electrons, rng)
        return sample


def measure(
    model_path: str, patterns: list[str], electrons: Sequence[float], light: str = "normal"
) -> dict:
    """NME (inter-ocular, per mode) of the samples of ``light`` (or ``all``) at each level."""
    from facealign_ros.face.landmarks import get_scheme
    from facealign_ros.model.checkpoint import load_checkpoint
    from facealign_ros.pipeline.config import default_model_path
    from training import metrics
    from training.evaluate import LIGHT_NAMES, dataset_config, predict
    from training.trainer.build import make_dataset

    model, meta = load_checkpoint(model_path or default_model_path(), device="cpu")
    cfg = dataset_config("bags", patterns, [], meta.preprocessing, "test")
    base = make_dataset(cfg, "test", 0)
    code = LIGHT_NAMES.index(light) if light != "all" else None
    keep = [i for i, (b, _, _) in enumerate(base.index) if code in (None, base.bags[b].light)]
    if not keep:
        raise ValueError(
            f"no {light}-light samples in {patterns} (recordings without a light label, such as "
            "your own: --light all)"
        )
    scheme = get_scheme(meta.landmark_scheme)
    rows = []
    for level in [None, *electrons]:
        pred = predict(model, ReexposedRGB(base, keep, level), MODES)
        dist = metrics.normalizing_distance(pred.gt, scheme)
        nme = {m: float(metrics.nme_per_sample(pred.landmarks[m], pred.gt, dist).mean())
               for m in MODES}  # fmt: skip
        rows.append({"electrons": "recorded" if level is None else level,
                     **{f"{m}_nme": round(v, 4) for m, v in nme.items()}})  # fmt: skip
    return {"model": str(model_path or "shipped"), "bags": patterns, "light": light,
            "samples": len(keep), "rows": rows}  # fmt: skip


def table(result: dict) -> str:
    """Markdown table of :func:`measure`'s rows."""
    lines = ["| RGB electrons / pixel | fused NME | event-only NME | RGB-only NME |",
             "|---|---|---|---|"]  # fmt: skip
    for r in result["rows"]:
        lines.append(
            f"| {r['electrons']} | {r['fused_nme']:.4f} | {r['event_nme']:.4f} "
            f"| {r['rgb_nme']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="", help="checkpoint (default: the shipped weights)")
    p.add_argument("--bags", action="append", required=True, help="labelled bags (glob)")
    p.add_argument("--electrons", default="30,10,3,1", help="comma list of electrons per pixel")
    p.add_argument("--light", default="normal", choices=("normal", "low", "dark", "all"),
                   help="samples of this synthetic light level (all: every sample)")  # fmt: skip
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    try:
        levels = [float(x) for x in a.electrons.split(",") if x.strip()]
    except ValueError:
        p.error(f"--electrons {a.electrons!r}: expected numbers separated by commas")
    if any(not v > 0 for v in levels):
        p.error("--electrons: every level must be > 0")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    try:
        result = measure(a.model, a.bags, levels, a.light)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"low_light_rgb: {exc}\n")
        return 2
    sys.stdout.write(json.dumps(result) + "\n" if a.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
