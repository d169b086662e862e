"""``facealign synth``: generate a synthetic RGB + event rosbag2 and/or a preview contact sheet.

Wire it into ``facealign_ros/cli.py``::

    from training.synth.cli import add_synth_parser, run_synth  # lazily, inside the command
    add_synth_parser(sub)            # in build_parser()
    if args.command == "synth":
        return run_synth(args)       # in main()
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from training.synth.options import LIGHT_LEVELS, MOTIONS, RGB_CAMERAS, SENSOR_SIZES


def _sensor(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"sensor must look like 346x260, got {text!r}") from None
    if (w, h) not in SENSOR_SIZES:
        sizes = ", ".join(f"{a}x{b}" for a, b in SENSOR_SIZES)
        raise argparse.ArgumentTypeError(f"unsupported sensor {text}; choose {sizes}")
    return w, h


def add_synth_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``synth`` sub-command to ``subparsers``; returns its parser."""
    p = subparsers.add_parser(
        "synth",
        help="synthetic RGB + event rosbag2 with ground truth (and/or a preview PNG)",
        description="Render moving 3D faces, simulate an RGB and an event camera and write a "
        "rosbag2 with events (evt3), images, camera info and ground-truth landmarks/head pose.",
    )
    p.add_argument("--out", help="output bag directory (must not exist)")
    p.add_argument("--seconds", type=float, default=10.0, help="duration in seconds")
    p.add_argument("--seed", type=int, default=0, help="scene seed (same seed: identical bag)")
    p.add_argument("--light", default="normal", help=f"light level: {'|'.join(LIGHT_LEVELS)}")
    p.add_argument("--motion", default="slow", help=f"head motion: {'|'.join(MOTIONS)}")
    p.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    p.add_argument("--sensor", type=_sensor, default=(346, 260), help="WxH: 346x260 (default), "
                   "640x480 or 1280x720")  # fmt: skip
    p.add_argument("--fps", type=float, default=30.0, help="RGB frame rate, Hz")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="rendering processes (0: render in the main process)")  # fmt: skip
    p.add_argument(
        "--flicker-hz",
        type=float,
        default=0.0,
        help="light flicker frequency (100 for 50 Hz mains, 120 for 60 Hz; 0: off)",
    )
    p.add_argument(
        "--max-event-rate",
        type=float,
        default=0.0,
        help="event bandwidth limit, events/s (0: unlimited)",
    )
    p.add_argument(
        "--head",
        choices=("james", "template", "ellipsoid"),
        default=None,
        help="base head mesh (default: random per seed)",
    )
    p.add_argument(
        "--rgb-camera",
        choices=tuple(RGB_CAMERAS),
        default="large-pixel",
        help="RGB sensor: large-pixel (DAVIS346-class APS, default) or small-pixel (~3 um CMOS: "
        "10x fewer electrons, a noisy frame in the dark)",
    )
    p.add_argument(
        "--no-face",
        action="store_true",
        help="the scene without its person (an empty seat: background, moving clutter, "
        "occluders; no ground truth), to measure how often a face is answered where none is",
    )
    p.add_argument("--preview", metavar="PNG", help="also write a contact sheet PNG")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    return p


def run_synth(args: argparse.Namespace) -> int:
    """Run ``facealign synth``; returns the exit code (2 for bad arguments, 1 for I/O errors)."""
    import dataclasses

    from facealign_ros.bag import BagError
    from training.synth.assets import AssetError
    from training.synth.bagout import write_synth_bag
    from training.synth.camera import rgb_camera
    from training.synth.engine import SensorConfig
    from training.synth.scene import SceneConfig

    def fail(msg: str, code: int = 2) -> int:
        sys.stderr.write(f"facealign synth: error: {msg}\n")
        return code

    if not args.out and not args.preview:
        return fail("give --out BAG and/or --preview PNG")
    if args.workers < 0:
        return fail(f"--workers must be >= 0, got {args.workers}")
    if not 0 <= args.max_event_rate < float("inf"):  # NaN fails too
        return fail(f"--max-event-rate must be finite and >= 0, got {args.max_event_rate}")
    width, height = args.sensor
    try:
        config = SceneConfig(
            seed=args.seed, seconds=args.seconds, light=args.light, motion=args.motion,
            width=width, height=height, fps=args.fps, head=args.head, flicker_hz=args.flicker_hz,
            face=not args.no_face,
        )  # fmt: skip
    except ValueError as exc:
        return fail(str(exc))
    sensor = SensorConfig(
        rgb=rgb_camera(args.rgb_camera, config.fps), max_event_rate_hz=args.max_event_rate
    )
    result: dict = {}
    if args.out:
        try:
            result = write_synth_bag(args.out, config, sensor, args.workers, args.storage)
        except (BagError, AssetError) as exc:
            return fail(str(exc), 1)
        result["seconds_per_wall_second"] = config.seconds / result["wall_s"]
        result["out"] = str(args.out)
    if args.preview:
        from training.synth.preview import contact_sheet

        base = dataclasses.replace(config, seconds=0.4)
        try:
            seeds = tuple(args.seed + i for i in range(4))
            result["preview"] = str(contact_sheet(args.preview, seeds, base=base))
        except OSError as exc:
            return fail(f"cannot write the preview {args.preview!r}: {exc}", 1)
    if args.json:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        for key, value in result.items():
            sys.stdout.write(f"{key:<24} {value}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m training.synth.cli``) until ``facealign`` wires it in."""
    parser = argparse.ArgumentParser(prog="facealign")
    sub = parser.add_subparsers(dest="command", required=True)
    add_synth_parser(sub)
    return run_synth(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
