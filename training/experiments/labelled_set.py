"""The labelled recordings of a label fraction, as ``make_set`` jobs: make them alone elsewhere.

The label-efficiency experiment (``training.experiments.label_efficiency``) fine-tunes on the
labels of a fraction of the training recordings, picked by :func:`training.data.labelled_subset`
from the sorted list of every training bag. A machine that only fine-tunes (a GPU lent for
minutes, with an encoder pretrained here) needs those recordings alone, not all of them; this
module names them from the seeds, without the bags existing.

The recordings are the synthetic training set of docs/MODEL_CARD.md: ``synth`` (bags 0–35,
6 s each) and ``synth_more`` (bags 36–275, 2 s each); see :data:`TRAIN_SET`.

    python -m training.experiments.labelled_set --fraction 0.1 --root data
    # one line per recording: OUT_DIR FIRST SECONDS  (make_set --out OUT_DIR --first FIRST
    #                                                 --train 1 --val 0 --test 0 --seconds SECONDS)

The labelled subset of those bags, made this way under ``ROOT``, is then the whole ``--train``
of ``label_efficiency --train-is-labelled``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from training.data import labelled_subset
from training.synth.make_set import plan

TRAIN_SET: tuple[tuple[str, int, int, float], ...] = (
    ("synth", 0, 36, 6.0),  # (folder, first bag, bags, seconds per bag)
    ("synth_more", 36, 240, 2.0),
)
"""The documented synthetic training set (docs/MODEL_CARD.md, ``make_set`` commands)."""


def labelled_jobs(
    fraction: float,
    root: Path = Path("data"),
    label_seed: int = 0,
    train_set: Sequence[tuple[str, int, int, float]] = TRAIN_SET,
) -> list[tuple[Path, int, float]]:
    """``(out_dir, first, seconds)`` of each labelled training recording, in sorted-path order.

    The same recordings :func:`training.data.labelled_subset` keeps from the sorted paths of
    every training bag under ``root`` (what ``--train 'ROOT/synth*/train_*'`` expands to).

    Raises:
        ValueError: ``fraction`` outside ``(0, 1]``.
    """
    every: dict[Path, tuple[Path, int, float]] = {}
    for folder, first, count, seconds in train_set:
        for k, (name, *_rest) in enumerate(plan("train", count, first)):
            every[root / folder / name] = (root / folder, first + k, seconds)
    paths = sorted(every, key=str)  # as training sorts the expanded glob strings
    return [every[p] for p in labelled_subset(paths, fraction, label_seed)]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fraction", type=float, default=0.1, help="label fraction, in (0, 1]")
    p.add_argument("--root", type=Path, default=Path("data"), help="folder of the set's folders")
    a = p.parse_args(argv)
    try:
        jobs = labelled_jobs(a.fraction, a.root)
    except ValueError as e:
        p.error(str(e))
    sys.stdout.writelines(f"{out} {first} {seconds:g}\n" for out, first, seconds in jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
