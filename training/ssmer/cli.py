r"""``facealign pretrain``: SSMER self-supervised pretraining of the event encoder on bags.

Examples::

    facealign pretrain --bags recordings/ --config training/configs/ssmer_lite.yaml
    facealign pretrain --bags a.mcap b_bag/ --config training/configs/ssmer_lite.yaml \\
        data.views=[event_frame,voxel] run.out_dir=runs/ssmer_fv --skip-bad
    torchrun --nproc_per_node=2 --no-python facealign pretrain --bags recordings/ \\
        --config training/configs/ssmer_lite.yaml

Then ``facealign train --config ... --init-event-encoder runs/ssmer_lite/encoder.safetensors``.
Killing a run and starting the same command again resumes from its last checkpoint, exactly.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from training.train import is_override

LOG = logging.getLogger("training.ssmer")


def add_pretrain_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``pretrain`` sub-command; :func:`run_pretrain` handles its namespace."""
    p = subparsers.add_parser(
        "pretrain",
        help="SSMER self-supervised pretraining of the event encoder on unlabelled bags",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--bags",
        nargs="+",
        action="extend",
        default=[],
        metavar="PATH",
        help="bags, globs or folders of bags (repeatable; KEY=VALUE items after it are "
        "config overrides)",
    )
    p.add_argument("--config", type=Path, required=True, help="SSMER YAML (training/configs)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--topic", help="EventPacket topic (default: every one in each bag)")
    p.add_argument("--skip-bad", action="store_true", help="skip unusable bags (listed)")
    p.add_argument("--out-dir", help="overrides run.out_dir")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides run.device")
    p.add_argument("--resume", metavar="auto|never|PATH", help="overrides run.resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def split_bags(items: list[str]) -> tuple[list[str], list[str]]:
    """``--bags`` items -> ``(bags, overrides)``.

    ``section.key=value`` items that are not existing paths are config overrides that argparse
    swept into ``--bags``.
    """
    bags, overrides = [], []
    for item in items:
        override = is_override(item) and not Path(item).exists()
        (overrides if override else bags).append(item)
    return bags, overrides


def _overrides(args: argparse.Namespace) -> list[str]:
    extra = [*split_bags(args.bags)[1], *(args.overrides or [])]
    for flag, key in (
        ("out_dir", "run.out_dir"),
        ("device", "run.device"),
        ("resume", "run.resume"),
        ("topic", "data.topic"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            extra.append(f"{key}={value}")
    if args.no_progress:
        extra.append("run.progress=false")
    return extra


def _check_detector(model: str, sources: list, log: bool) -> None:
    """``box_source: detector``: the detector loads, and which sources have no RGB to run it on.

    Raises:
        ConfigError: the detector model is missing or unreadable.
    """
    from facealign_ros.face.detector import BlazeFaceDetector, DetectorError
    from training.trainer.config import ConfigError

    try:
        BlazeFaceDetector(model)  # "" = the cached model
    except DetectorError as exc:
        raise ConfigError(f"data.box_source=detector: {exc}") from exc
    without = [s for s in sources if not s.image_topic]
    if without and log:
        LOG.warning(
            "box_source=detector: %d of %d source(s) have no sensor_msgs/Image topic; their "
            "windows use activity boxes: %s",
            len(without),
            len(sources),
            ", ".join(f"{s.path.name}:{s.topic}" for s in without[:5])
            + (" ..." if len(without) > 5 else ""),
        )


def run_pretrain(args: argparse.Namespace) -> int:
    """Run ``facealign pretrain``; returns 0, or 2 on a config/data/resume error (logged)."""
    from facealign_ros.model.checkpoint import CheckpointError
    from training.ssmer.config import load_ssmer_config
    from training.ssmer.loop import Pretrainer
    from training.ssmer.sources import SourceError, expand_bag_paths, find_sources
    from training.train import command_line, setup_logging
    from training.trainer.config import ConfigError
    from training.trainer.distributed import DistEnv
    from training.trainer.state import ResumeError

    env = DistEnv.from_env()
    setup_logging(env)
    try:
        cfg = load_ssmer_config(args.config, _overrides(args))
        patterns = [*cfg.data.bags, *split_bags(args.bags)[0]]
        if not patterns:
            raise ConfigError("no bags: pass --bags PATH... or set data.bags in the config")
        sources, skipped = find_sources(expand_bag_paths(patterns), cfg.data.topic, args.skip_bad)
        if skipped and env.is_main:
            LOG.warning("skipped %d bag(s):", len(skipped))
            for path, why in skipped:
                LOG.warning("  %s: %s", path, why)
        if env.is_main:
            LOG.info("pretraining on %d event source(s)", len(sources))
        if cfg.data.box_source == "detector":
            _check_detector(cfg.data.detector_model, sources, env.is_main)
        result = Pretrainer(cfg, sources, command=command_line()).fit()
    except (ConfigError, SourceError, ResumeError, ValueError, OSError, CheckpointError) as exc:
        LOG.error("%s", exc)
        return 2
    if env.is_main:
        LOG.info(
            "done: %d steps, %.1f windows/s per process, encoder %s",
            result.step,
            result.windows_per_s,
            result.encoder_path,
        )
    return 0
