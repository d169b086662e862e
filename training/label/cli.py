"""``facealign label IN_BAG -o OUT_BAG``: offline teacher labelling of a user's recording.

Wire it into ``facealign_ros/cli.py``::

    from training.label.cli import add_label_parser, run_label  # lazily, inside the command
    add_label_parser(sub)            # in build_parser()
    if args.command == "label":
        return run_label(args)       # in main()
"""

from __future__ import annotations

import argparse
import json
import sys

from facealign_ros import topics
from facealign_ros.cli import positive_int

_DESCRIPTION = """\
Label the RGB frames of a rosbag2 (mcap or sqlite3) with an offline face-landmark teacher
(MediaPipe face mesh 0.10.21, mapped to the 70 REP-155 points; pupils from the iris model)
and write a new bag: every original message unchanged, plus /facealign/gt/landmarks,
/facealign/gt/head_pose (PnP with the bag's CameraInfo, else default intrinsics),
/facealign/label/quality (per-frame score, JSON) and /facealign/label/metadata.
`facealign train` reads the output directly.

Each frame is scored in [0, 1]: min(face detector score, flip consistency), where flip
consistency compares the teacher on the frame and on its mirror image. Frames scoring below
--min-score, frames without a face and undecodable images are MARKED: their landmark message
is written with every confidence 0 (and no head pose), and training skips them.

The teacher needs numpy<2, so it lives in its own virtual environment (default
~/.cache/facealign_ros/teacher-venv; or $FACEALIGN_TEACHER_PYTHON / --teacher-python);
create it once with `facealign label --install-teacher`.
"""


def _score(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def add_label_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``label`` sub-command to ``subparsers``; returns its parser."""
    p = subparsers.add_parser(
        "label",
        help="label a recording's RGB frames with an offline teacher (MediaPipe)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("in_bag", nargs="?", metavar="IN_BAG", help="input rosbag2 (dir, .mcap, .db3)")
    p.add_argument("-o", "--out", metavar="OUT_BAG", help="output bag directory")
    p.add_argument("--image-topic", default=topics.IMAGE,
                   help="sensor_msgs/Image (or CompressedImage) topic to label")  # fmt: skip
    p.add_argument(
        "--camera-info-topic",
        default=topics.CAMERA_INFO,
        help="sensor_msgs/CameraInfo topic for head pose (optional in the bag)",
    )
    p.add_argument(
        "--min-score",
        type=_score,
        default=0.5,
        help="frames scoring below this are marked, confidences 0 (default 0.5)",
    )
    p.add_argument(
        "--every", type=positive_int, default=1, help="label every Nth image (default 1)"
    )
    p.add_argument(
        "--storage",
        choices=("mcap", "sqlite3"),
        default=None,
        help="output storage (default: the input's)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite OUT_BAG; replace ground truth already in IN_BAG",
    )
    p.add_argument(
        "--teacher-python",
        default=None,
        help="Python with mediapipe==0.10.21 (default: $FACEALIGN_TEACHER_PYTHON, "
        "else the venv made by --install-teacher)",
    )
    p.add_argument(
        "--teacher-worker",
        default=None,
        metavar="SCRIPT",
        help="another teacher: a script speaking the worker protocol of "
        "training/label/worker.py (run by the teacher python)",
    )
    p.add_argument(
        "--install-teacher",
        action="store_true",
        help="create the teacher venv (python -m venv + pip install "
        "mediapipe==0.10.21 'numpy<2'), then label IN_BAG if given",
    )
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    return p


def _progress(done: int, total: int) -> None:
    if done == total or done % 50 == 0:
        sys.stderr.write(f"\rlabelled {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _print_stats(stats: dict) -> None:
    keys = ("images", "labelled", "marked", "marked_pct", "no_face", "bad_images",
            "teacher_failures", "messages_copied", "frames_per_s", "wall_s", "out")  # fmt: skip
    for key in keys:
        value = stats[key]
        sys.stdout.write(f"{key:<16} {value:.3g}\n" if isinstance(value, float) else
                         f"{key:<16} {value}\n")  # fmt: skip
    for example in stats["bad_examples"]:
        sys.stdout.write(f"marked: {example}\n")


def run_label(args: argparse.Namespace) -> int:
    """Run ``facealign label``; returns the exit code (2: usage or no teacher, 1: failures)."""
    from facealign_ros.bag import BagError
    from training.label.bagcopy import RawBagReader
    from training.label.labeler import LabelError, LabelOptions, check_input, label_bag
    from training.label.teacher import (
        WORKER,
        TeacherError,
        TeacherMissingError,
        TeacherProcess,
        install_teacher,
        resolve_python,
    )

    try:
        if args.install_teacher:
            sys.stdout.write(f"teacher installed: {install_teacher()}\n")
            if args.in_bag is None:
                return 0
        if args.in_bag is None or args.out is None:
            sys.stderr.write("facealign label: IN_BAG and -o OUT_BAG are required\n")
            return 2
        options = LabelOptions(image_topic=args.image_topic, min_score=args.min_score,
                               every=args.every, storage=args.storage, force=args.force,
                               camera_info_topic=args.camera_info_topic)  # fmt: skip
        python = resolve_python(args.teacher_python)
        with RawBagReader(args.in_bag) as bag:  # cheap checks before the teacher starts
            check_input(bag, options)
        worker = args.teacher_worker or WORKER
        with TeacherProcess(python, worker) as teacher:
            stats = label_bag(args.in_bag, args.out, teacher, options, teacher.info,
                              progress=None if args.json else _progress)  # fmt: skip
    except TeacherMissingError as err:
        sys.stderr.write(f"{err}\n")
        return 2
    except (LabelError, BagError, TeacherError) as err:
        sys.stderr.write(f"facealign label: {err}\n")
        return 1
    result = {**stats.as_dict(), "out": str(args.out)}
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        _print_stats(result)
    return 0
