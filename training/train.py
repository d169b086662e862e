"""``facealign train``: CMFA training from a YAML config with dotted overrides.

Examples::

    facealign train --config training/configs/smoke.yaml
    facealign train --config training/configs/lite.yaml optim.lr=3e-4 run.out_dir=runs/lite2
    torchrun --nproc_per_node=2 --no-python facealign train --config training/configs/lite.yaml
    python -m training.train --config training/configs/smoke.yaml --device cpu

Killing a run and starting the same command again resumes from its last checkpoint
(``run.resume: auto``), exactly.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.trainer.distributed import DistEnv

LOG = logging.getLogger("training.train")
_OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)+=")


def is_override(text: str) -> bool:
    """True for a dotted ``section.key=value`` config override."""
    return _OVERRIDE.match(text) is not None


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to an ``argparse`` sub-parser collection.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The new sub-parser (``run_train`` handles its namespace).
    """
    p = subparsers.add_parser(
        "train",
        help="train CMFA from a YAML config",
        description="Train CMFA. Overrides are dotted key=value pairs, e.g. optim.lr=3e-4.",
    )
    _add_train_arguments(p)
    return p


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, required=True, help="training YAML (training/configs)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides run.device")
    p.add_argument("--resume", metavar="auto|never|PATH", help="overrides run.resume")
    p.add_argument("--out-dir", help="overrides run.out_dir")
    p.add_argument(
        "--init-event-encoder",
        metavar="CKPT",
        help="safetensors event-backbone weights (SSMER) for a fresh run",
    )
    p.add_argument(
        "--init-from",
        metavar="CKPT|shipped",
        help="CMFA checkpoint whose weights start a fresh run (fine-tune; 'shipped' = ours)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that started this process, as a shell line (recorded in checkpoints)."""
    args = list(sys.argv if argv is None else argv)
    prog = Path(args[0]).name if args else "facealign"
    if prog.endswith(".py"):
        prog = "python -m training.train"
    line = " ".join([prog, shlex.join(args[1:])]) if len(args) > 1 else prog
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        per_node = os.environ.get("LOCAL_WORLD_SIZE", str(world))
        line = f"torchrun --nproc_per_node={per_node} " + (
            line.replace("python -m", "-m", 1) if line.startswith("python -m") else line
        )
    return line


def _overrides(args: argparse.Namespace) -> list[str]:
    extra = list(args.overrides or [])
    for flag, key in (
        ("device", "run.device"),
        ("resume", "run.resume"),
        ("out_dir", "run.out_dir"),
        ("init_event_encoder", "model.init_event_encoder"),
        ("init_from", "model.init_from"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            extra.append(f"{key}={value}")
    if getattr(args, "no_progress", False):
        extra.append("run.progress=false")
    return extra


def setup_logging(env: DistEnv) -> None:
    """INFO logs on rank 0, warnings elsewhere (unless the application configured logging)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO if env.is_main else logging.WARNING,
            format=f"%(asctime)s [rank {env.rank}] %(name)s: %(message)s",
        )


def run_train(args: argparse.Namespace) -> int:
    """Run ``facealign train`` for parsed arguments; returns the exit code.

    Returns:
        0 on success, 2 on a configuration, data or resume error (logged).
    """
    # torch-heavy: imported when used, so that building the CLI parser stays cheap
    from facealign_ros.model.checkpoint import CheckpointError
    from training.trainer.config import ConfigError, load_config
    from training.trainer.distributed import DistEnv
    from training.trainer.loop import Trainer
    from training.trainer.state import ResumeError

    env = DistEnv.from_env()
    setup_logging(env)
    try:
        cfg = load_config(args.config, _overrides(args))
        result = Trainer(cfg, command=getattr(args, "command_line", None) or command_line()).fit()
    except (ConfigError, ResumeError, ValueError, OSError, CheckpointError) as exc:
        LOG.error("%s", exc)
        LOG.debug("details", exc_info=True)
        return 2
    if env.is_main:
        LOG.info(
            "done: %d steps, model %s, metrics %s", result.step, result.model_path, result.metrics
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.train ...`` (the same arguments as ``facealign train``)."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    _add_train_arguments(parser)
    args, extra = parser.parse_known_args(argv)
    if not all(is_override(x) for x in extra):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = [*(args.overrides or []), *extra]  # KEY=VALUE after options
    return run_train(args)


if __name__ == "__main__":
    sys.exit(main())
