"""Evaluation of a CMFA model on a dataset: NME, FR, AUC, head pose; by condition and by mode.

``facealign eval --model M BAG... --json`` runs :func:`evaluate` on the dataset the bags give
(or the toy dataset) and reports, for the same weights run **fused** (RGB + events),
**event**-only and **rgb**-only (:data:`MODES`):

- top level: the fused ``nme``, ``fr10``, ``auc10`` and ``pose_mae_deg`` (yaw/pitch/roll MAE
  from landmarks, when the data has ground-truth pose and a pose function is available);
- ``by_mode``: the same per mode;
- ``by_condition``: per light level (``light=normal|low|dark``) and motion (``motion=slow|fast``)
  the sample count and each mode's metrics;
- ``ratios``: each mode's low-light and dark NME over its normal-light NME (the design bars);
- ``by_recording`` (bag datasets): per recording (bag folder name) the sample count and each
  mode's NME / FR / AUC, to find the recordings a model fails on.

Pose functions map ``(M, N, 2)`` landmarks in sensor pixels (crop landmarks mapped back through
``A``), the landmark scheme and ``(M, 3, 3)`` camera matrices (or None) to ``(M, 3)``
yaw/pitch/roll degrees (NaN where unknown). They come from the ``pose_fn`` argument, else the
dataset's ``pose_fn`` attribute, else :func:`facealign_pose_fn` (PnP with
:func:`facealign_ros.face.pose.estimate_pose`); without any, pose is skipped (``pose_mae_deg``
null). Camera matrices come from :func:`sample_intrinsics`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from facealign_ros.cli import nonneg_int, positive_int
from facealign_ros.face.landmarks import LandmarkScheme
from training import metrics
from training.trainer.pose import PoseFn, crop_to_sensor, facealign_pose_fn, sample_intrinsics

if TYPE_CHECKING:  # torch loads lazily: building the CLI parser must stay cheap
    import torch
    from torch.utils.data import Dataset

    from facealign_ros.model.cmfa import CMFA

__all__ = [
    "MODES",
    "EvalResult",
    "PoseFn",
    "Predictions",
    "add_eval_parser",
    "crop_to_sensor",
    "evaluate",
    "facealign_pose_fn",
    "predict",
    "run_eval",
    "sample_intrinsics",
    "spread_indices",
    "write_outputs",
]

LOG = logging.getLogger(__name__)
MODES = ("fused", "event", "rgb")
LIGHT_NAMES = ("normal", "low", "dark")
MOTION_NAMES = ("slow", "fast")


@dataclass(frozen=True)
class Predictions:
    """Per-sample predictions and ground truth of one pass over a dataset.

    Attributes:
        landmarks: Mode -> (M, N, 2) predicted landmarks in [0, 1] crop coordinates.
        gt: (M, N, 2) ground truth.
        pose_gt: (M, 3) ground-truth yaw/pitch/roll degrees (NaN = unknown).
        light: (M,) light level 0/1/2.
        motion: (M,) motion 0/1.
        A: (M, 2, 3) sensor->crop affines.
        size: Crop side S in pixels.
        indices: (M,) dataset index of each row.
    """

    landmarks: dict[str, np.ndarray]
    gt: np.ndarray
    pose_gt: np.ndarray
    light: np.ndarray
    motion: np.ndarray
    A: np.ndarray
    size: int
    indices: np.ndarray


@dataclass(frozen=True)
class EvalResult:
    """Report and per-sample NMEs (for plots).

    Attributes:
        report: The JSON-able report (see the module docstring).
        nmes: Mode -> (M,) per-sample NMEs.
        predictions: The raw predictions.
    """

    report: dict[str, Any]
    nmes: dict[str, np.ndarray]
    predictions: Predictions = field(repr=False)


def _run_mode(model: CMFA, batch: Mapping[str, torch.Tensor], mode: str) -> torch.Tensor:
    rgb, ev = batch["rgb"], batch["events"]
    if mode == "fused":
        out = model(rgb, ev, rgb_present=batch["rgb_present"], event_present=batch["event_present"])
    elif mode == "event":
        out = model(None, ev)
    elif mode == "rgb":
        out = model(rgb, None)
    else:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
    return out["landmarks"].float().cpu()


def predict(
    model: CMFA,
    dataset: Dataset,
    modes: Sequence[str] = MODES,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    limit: int = 0,
    num_workers: int = 0,
) -> Predictions:
    """Run ``model`` (eval mode) over ``dataset`` once per batch and mode.

    Args:
        model: The network (its training mode is restored afterwards).
        dataset: Samples following the training contract.
        modes: Subset of :data:`MODES`.
        batch_size: Batch size.
        device: Where to run.
        limit: Use ``limit`` samples spread evenly over the dataset (0 = all); see
            :func:`spread_indices`.
        num_workers: DataLoader workers.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    dev = torch.device(device)
    n = len(dataset)  # type: ignore[arg-type]
    indices = spread_indices(n, limit)
    ds = Subset(dataset, indices.tolist()) if len(indices) < n else dataset
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training, grad_before = model.training, torch.is_grad_enabled()
    model.eval()
    preds: dict[str, list[torch.Tensor]] = {m: [] for m in modes}
    keep: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("landmarks", "pose_deg", "light", "motion", "A")
    }
    size = 0
    try:
        torch.set_grad_enabled(False)
        for batch in loader:
            size = int(batch["events"].shape[-1])
            inputs = {
                "rgb": batch["rgb"].to(dev, torch.float32),
                "events": batch["events"].to(dev, torch.float32),
                "rgb_present": batch["rgb_present"].to(dev).bool(),
                "event_present": batch["event_present"].to(dev).bool(),
            }
            for m in modes:
                preds[m].append(_run_mode(model, inputs, m))
            for k in keep:
                keep[k].append(torch.as_tensor(batch[k]))
    finally:
        torch.set_grad_enabled(grad_before)
        model.train(was_training)
    cat = {k: torch.cat(v).numpy() if v else np.zeros(0) for k, v in keep.items()}
    return Predictions(
        landmarks={m: torch.cat(v).numpy().astype(np.float64) for m, v in preds.items()},
        gt=cat["landmarks"].astype(np.float64),
        pose_gt=cat["pose_deg"].astype(np.float64).reshape(-1, 3),
        light=cat["light"].astype(np.int64),
        motion=cat["motion"].astype(np.int64),
        A=cat["A"].astype(np.float64).reshape(-1, 2, 3),
        size=size,
        indices=indices,
    )


def spread_indices(n: int, limit: int) -> np.ndarray:
    """(min(n, limit),) increasing indices spread evenly over ``range(n)`` (all when 0).

    Bag datasets are ordered by recording, so the first ``limit`` samples would be one or two
    recordings of one condition; ``floor(k * n / limit)`` takes every condition in proportion.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if limit == 0 or limit >= n:
        return np.arange(n, dtype=np.int64)
    return (np.arange(limit, dtype=np.int64) * n) // limit


def _mode_metrics(
    nmes: np.ndarray, pose_pred: np.ndarray | None, pose_gt: np.ndarray, threshold: float
) -> dict[str, Any]:
    out: dict[str, Any] = metrics.summarize(nmes, threshold)
    out["pose_mae_deg"] = None if pose_pred is None else metrics.pose_mae(pose_pred, pose_gt)
    return out


def evaluate(
    model: CMFA,
    dataset: Dataset,
    scheme: LandmarkScheme,
    *,
    modes: Sequence[str] = MODES,
    norm: str = "interocular",
    threshold: float = 0.1,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    limit: int = 0,
    pose_fn: PoseFn | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``dataset`` in each mode; see the module docstring for the report.

    Args:
        model: The network.
        dataset: Samples following the training contract.
        scheme: Landmark scheme of the model and data.
        modes: Modes to run; the top-level numbers are the first mode's (``fused`` by default).
        norm: ``"interocular"`` or ``"interpupil"``.
        threshold: Failure / AUC threshold (0.10).
        batch_size: Batch size.
        device: Where to run.
        limit: Use ``limit`` samples spread evenly over the dataset (0 = all).
        pose_fn: Head pose from landmarks (see the module docstring); None = auto.
    """
    pred = predict(model, dataset, modes, batch_size=batch_size, device=device, limit=limit)
    dist = metrics.normalizing_distance(pred.gt, scheme, norm)
    nmes = {m: metrics.nme_per_sample(pred.landmarks[m], pred.gt, dist) for m in modes}
    has_pose = bool(np.isfinite(pred.pose_gt).all(axis=1).any())
    if pose_fn is None and has_pose:
        pose_fn = getattr(dataset, "pose_fn", None) or facealign_pose_fn()
    poses = {m: None for m in modes}
    if has_pose and pose_fn is not None:
        K = sample_intrinsics(dataset, pred.indices)
        poses = {
            m: pose_fn(crop_to_sensor(pred.landmarks[m], pred.A, pred.size), scheme, K)
            for m in modes
        }
    by_mode = {m: _mode_metrics(nmes[m], poses[m], pred.pose_gt, threshold) for m in modes}
    groups = [(f"light={n}", pred.light == i) for i, n in enumerate(LIGHT_NAMES)]
    groups += [(f"motion={n}", pred.motion == i) for i, n in enumerate(MOTION_NAMES)]
    by_condition: dict[str, Any] = {}
    for name, mask in groups:
        entry: dict[str, Any] = {"count": int(mask.sum())}
        for m in modes:
            p = None if poses[m] is None else poses[m][mask]
            entry[m] = _mode_metrics(nmes[m][mask], p, pred.pose_gt[mask], threshold)
        by_condition[name] = entry
    ratios = {}
    for m in modes:
        base = by_condition["light=normal"][m]["nme"]
        for level in ("low", "dark"):
            nme = by_condition[f"light={level}"][m]["nme"]
            ok = base > 0 and np.isfinite(base)
            ratios[f"{m}_{level}_over_normal"] = nme / base if ok else float("nan")
    pct = int(round(threshold * 100))
    head = by_mode[modes[0]]
    recordings = recording_names(dataset, pred.indices)
    report = {
        "num_samples": int(len(pred.gt)),
        "norm": norm,
        "threshold": threshold,
        "nme": head["nme"],
        f"fr{pct}": head[f"fr{pct}"],
        f"auc{pct}": head[f"auc{pct}"],
        "pose_mae_deg": head["pose_mae_deg"],
        "by_mode": by_mode,
        "by_condition": by_condition,
        "ratios": ratios,
    }
    if recordings is not None:
        by_recording: dict[str, Any] = {}
        for name in sorted(set(recordings.tolist())):
            mask = recordings == name
            by_recording[name] = {"count": int(mask.sum())}
            by_recording[name].update(
                {m: metrics.summarize(nmes[m][mask], threshold) for m in modes}
            )
        report["by_recording"] = by_recording
    clean = cast(dict[str, Any], metrics.finite_or_none(report))
    return EvalResult(report=clean, nmes=nmes, predictions=pred)


def recording_names(dataset: Any, samples: Sequence[int]) -> np.ndarray | None:
    """(M,) name of the recording of each of ``samples`` (dataset indices).

    None when the dataset does not say (only bag datasets keep an index of
    ``(bag, kind, row)``).
    """
    index, bags = getattr(dataset, "index", None), getattr(dataset, "bags", None)
    if index is None or bags is None:
        return None
    try:
        return np.array([str(bags[index[int(i)][0]].name) for i in samples])
    except (AttributeError, TypeError, ValueError, IndexError):
        return None


def write_outputs(result: EvalResult, out_dir: str | Path, threshold: float = 0.1) -> list[Path]:
    """Write ``eval.json``, ``ced.png`` and ``by_condition.png`` into ``out_dir``."""
    from training.plots import plot_by_condition, plot_ced

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / "eval.json"
    report_path.write_text(json.dumps(result.report, indent=2) + "\n", encoding="utf-8")
    return [
        report_path,
        plot_ced(result.nmes, out / "ced.png", threshold),
        plot_by_condition(
            result.report["by_condition"], out / "by_condition.png", list(result.nmes)
        ),
    ]


def dataset_config(
    kind: str,
    inputs: Sequence[str],
    options: Sequence[str],
    preprocessing: Mapping[str, Any],
    split: str = "test",
) -> dict[str, Any]:
    """Factory config for ``facealign eval``: kind, bag paths, ``--option``s, model's InputSpec.

    Bags given on the command line become ``paths: {split: [...]}``; for bag datasets the
    model's preprocessing (an ``InputSpec`` dict) becomes ``input`` unless an option sets it,
    so the crops match what the model was trained on.
    """
    from training.trainer.config import apply_overrides

    cfg: dict[str, Any] = apply_overrides({"kind": kind}, options)
    if inputs:
        cfg["paths"] = {split: list(inputs)}
    if kind != "toy" and "size" in preprocessing and "representations" in preprocessing:
        cfg.setdefault("input", dict(preprocessing))
    return cfg


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` sub-command to an ``argparse`` sub-parser collection.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The new sub-parser (``run_eval`` handles its namespace).
    """
    p = subparsers.add_parser(
        "eval",
        help="evaluate a CMFA checkpoint (NME, FR, AUC, pose; by condition and mode)",
        description="Evaluate a model fused, event-only and RGB-only on bags with ground truth.",
    )
    p.add_argument("--model", type=Path, required=True, help="CMFA checkpoint (.safetensors)")
    p.add_argument("inputs", nargs="*", metavar="BAG", help="bags (or folders of bags)")
    p.add_argument("--kind", default="bags", help="dataset kind (bags, toy, ...)")
    p.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option"
    )
    p.add_argument("--split", default="test", help="dataset split")
    p.add_argument("--norm", choices=metrics.NORMS, default="interocular")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of fused,event,rgb")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--limit",
        type=nonneg_int,
        default=0,
        help="N samples spread evenly over the data (0 = all)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=nonneg_int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--out", type=Path, help="write eval.json, ced.png, by_condition.png here")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return p


def run_eval(args: argparse.Namespace) -> int:
    """Run ``facealign eval`` for parsed arguments; returns the exit code (2 on bad input)."""
    from facealign_ros.face.landmarks import get_scheme
    from facealign_ros.model.checkpoint import CheckpointError, load_checkpoint
    from facealign_ros.model.infer import resolve_device
    from training.trainer.build import data_fields, make_dataset

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        LOG.error("unknown modes %s; choose from %s", bad, MODES)
        return 2
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        LOG.error("--out %s is a file, not a directory", args.out)  # before, not after, the work
        return 2
    import torch

    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    try:
        model, meta = load_checkpoint(args.model, device=device)
        cfg = dataset_config(args.kind, args.inputs, args.option, meta.preprocessing, args.split)
        dataset = make_dataset(cfg, args.split, args.seed)
        fields = data_fields(dataset[0])
    except (CheckpointError, ValueError, OSError) as exc:
        LOG.error("%s", exc)
        return 2
    net = model.config
    want = {"num_points": net.num_points, "input_size": net.input_size}
    want["event_channels"] = net.event_channels
    if fields != want:
        LOG.error("data %s does not fit the model %s", fields, want)
        return 2
    result = evaluate(
        model,
        dataset,
        get_scheme(meta.landmark_scheme),
        modes=modes,
        norm=args.norm,
        batch_size=args.batch_size,
        device=device,
        limit=args.limit,
    )
    report = {"model": str(args.model), "dataset": cfg, "split": args.split, **result.report}
    result = EvalResult(report, result.nmes, result.predictions)
    if args.out is not None:
        for path in write_outputs(result, args.out):
            LOG.info("wrote %s", path)
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        _print_summary(report)
    return 0


def _print_summary(report: Mapping[str, Any]) -> None:
    lines = [f"{report['num_samples']} samples, NME normalised {report['norm']}"]
    lines.append(f"{'':16}" + "".join(f"{m:>24}" for m in report["by_mode"]))
    rows = [("all", {"count": report["num_samples"], **report["by_mode"]})]
    rows += list(report["by_condition"].items())
    for name, entry in rows:
        cells = []
        for m in report["by_mode"]:
            e = entry.get(m) or {}
            nme, fr = e.get("nme"), e.get("fr10")
            cells.append(
                f"{'-':>24}" if nme is None else f"{100 * nme:9.2f}% FR {100 * (fr or 0):6.1f}%"
            )
        lines.append(f"{name:16}" + "".join(f"{c:>24}" for c in cells))
    sys.stdout.write("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.evaluate --model M [BAG...]`` (the same as ``facealign eval``)."""
    parser = argparse.ArgumentParser(prog="python -m training.evaluate")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_parser(sub)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    return run_eval(parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
