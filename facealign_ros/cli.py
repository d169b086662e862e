"""The ``facealign`` command (top floor: may dispatch lazily to ``training`` commands)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence


def positive_int(text: str) -> int:
    """The argparse type of integer options that must be > 0 (shared by the command lines)."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    """The argparse type of float options that must be finite and > 0 (durations, rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def nonneg_int(text: str) -> int:
    """The argparse type of integer options where 0 means "default" or "none" (>= 0)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``facealign`` with all sub-commands."""
    parser = argparse.ArgumentParser(
        prog="facealign", description="Event-camera (+RGB) face alignment: offline tools."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from training.synth.cli import add_synth_parser  # argparse only: cheap to import

    add_synth_parser(sub)
    from training.replay import add_demo_parser, add_replay_parser

    add_replay_parser(sub)
    add_demo_parser(sub)
    from training.evaluate import add_eval_parser
    from training.train import add_train_parser

    add_train_parser(sub)
    add_eval_parser(sub)
    from training.label.cli import add_label_parser

    add_label_parser(sub)
    from training.ssmer.cli import add_pretrain_parser

    add_pretrain_parser(sub)

    fd = sub.add_parser(
        "fetch-detector",
        help="fetch the BlazeFace face-detector model (from the mediapipe wheel on PyPI) once",
        description="Puts BlazeFace's model into the cache ($FACEALIGN_CACHE, default "
        "~/.cache/facealign_ros): the node's face search starts from its boxes. Offline: "
        "point $FACEALIGN_MEDIAPIPE_WHEEL at a downloaded copy of the pinned wheel.",
    )
    fd.add_argument("--json", action="store_true", help="print one JSON object")
    _add_recover_parser(sub)

    bench = sub.add_parser("bench", help="benchmarks measured side by side with references")
    bench_sub = bench.add_subparsers(dest="bench_target", required=True)
    ev = bench_sub.add_parser(
        "events", help="evt3 decoding and representations vs expelliarmus and tonic"
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--events", type=_bench_events, default=5_000_000,
                    help="stream size (>= 1000)")  # fmt: skip
    ev.add_argument("--repeats", type=positive_int, default=5, help="timed runs (median)")
    ev.add_argument("--seed", type=int, default=0)
    pl = bench_sub.add_parser(
        "pipeline", help="node pipeline latency/RSS/rates: RGB 30 Hz + 5 Mev/s evt3 in real time"
    )
    pl.add_argument("--json", action="store_true", help="print one JSON object")
    pl.add_argument("--seconds", type=positive_float, default=4.0, help="seconds fed per phase")
    pl.add_argument("--event-rate", type=positive_float, default=5e6, help="events per second")
    pl.add_argument("--model", default="", help="checkpoint (default: shipped weights)")
    pl.add_argument("--device", default="cpu")
    pl.add_argument(
        "--scenario",
        choices=("face", "search"),
        default="face",
        help="face: one tracked synthetic face (the bar's case); search: no face, searching",
    )
    pl.add_argument("--bag", help="face: a recording with ground truth to loop instead")
    pl.add_argument("--seed", type=int, default=0, help="face: seed of the synthetic recording")
    pl.add_argument("--threads", type=positive_int, help="torch threads (default: the node's, 1)")
    pl.add_argument("--param", action="append", default=[], metavar="K=V",
                    help="node parameter, e.g. face_detector=grid (repeat)")  # fmt: skip
    sy = bench_sub.add_parser(
        "synth", help="synthetic engine: seconds of data per wall second; training samples/s"
    )
    sy.add_argument("--json", action="store_true", help="print one JSON object")
    sy.add_argument("--seconds", type=float, default=3.0, help="simulated seconds per run")
    sy.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts")
    return parser


def _bench_events(text: str) -> int:
    """``bench events --events``: a stream long enough to split into packets (>= 1000)."""
    value = int(text)
    if value < 1000:
        raise argparse.ArgumentTypeError(f"must be >= 1000 events, got {text}")
    return value


def _add_recover_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``facealign recover IN_BAG -o OUT_BAG [--json]``."""
    rc = sub.add_parser(
        "recover",
        help="save the messages of an mcap bag whose recorder was killed into a new bag",
        description="Reads every .mcap file of IN_BAG (a rosbag2 directory, metadata.yaml "
        "optional, or one .mcap file) as far as it is intact and writes its messages, with "
        "their topics, types, log times and the recording's message definitions, into a new, "
        "complete bag OUT_BAG. IN_BAG is only read.",
    )
    rc.add_argument("bag", metavar="IN_BAG", help="mcap bag directory or .mcap file")
    rc.add_argument(
        "-o", "--out", metavar="OUT_BAG", required=True, help="new bag (must not exist)"
    )
    rc.add_argument("--json", action="store_true", help="print one JSON object")


def _recover(args: argparse.Namespace) -> int:
    from facealign_ros.bag import BagError, recover_bag

    try:
        report = recover_bag(args.bag, args.out)
    except BagError as exc:
        sys.stderr.write(f"facealign recover: {exc}\n")
        return 2
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict()) + "\n")
        return 0
    out = sys.stdout
    out.write(f"recovered {report.messages} messages into {report.output}\n")
    width = max(len(topic) for topic in report.topics)
    for topic, (msgtype, count) in report.topics.items():
        out.write(f"  {topic:<{width}}  {count:>8}  {msgtype}\n")
    for scan in report.files:
        state = "complete" if scan.data_end else f"{scan.lost_bytes} bytes lost: {scan.stop}"
        out.write(f"{scan.path.name}: {scan.readable_bytes} of {scan.size_bytes} bytes read, ")
        out.write(f"{state}\n")
    if report.skipped_messages:
        out.write(f"skipped {report.skipped_messages} messages (see the notes)\n")
    for note in report.notes:
        out.write(f"note: {note}\n")
    return 0


def _print_table(result: dict) -> None:
    width = max(len(k) for k in result)
    for key, value in result.items():
        if key == "notes":
            continue
        if isinstance(value, list):  # e.g. one row per run
            for row in value:
                sys.stdout.write(f"{key:<{width}}  {row}\n")
            continue
        sys.stdout.write(f"{key:<{width}}  {value}\n")
    for note in result.get("notes", []):
        sys.stdout.write(f"note: {note}\n")


def _bench(args: argparse.Namespace) -> int:
    if args.bench_target == "events":
        from training.bench.events import run_events_bench

        result = run_events_bench(n_events=args.events, repeats=args.repeats, seed=args.seed)
    elif args.bench_target == "pipeline":
        from training.bench.pipeline import run_pipeline_bench
        from training.replay import parse_params

        try:
            params = parse_params(args.param)
        except ValueError as exc:
            sys.stderr.write(f"facealign bench pipeline: {exc}\n")
            return 2
        try:
            result = run_pipeline_bench(
                seconds=args.seconds,
                event_rate=args.event_rate,
                model=args.model,
                device=args.device,
                scenario=args.scenario,
                bag=args.bag,
                seed=args.seed,
                threads=args.threads,
                params=params,
            )
        except ValueError as exc:  # a missing --model/--bag, bad node parameters
            sys.stderr.write(f"facealign bench pipeline: {exc}\n")
            return 2
    elif args.bench_target == "synth":
        from training.bench.data import bench_samples
        from training.synth.bench import bench_synth

        if args.seconds <= 0 or min(args.workers) < 0:
            sys.stderr.write("facealign bench synth: --seconds > 0 and --workers >= 0 please\n")
            return 2
        result = bench_synth(seconds=args.seconds, workers=tuple(args.workers))
        result["dataset"] = bench_samples(seconds=max(args.seconds, 0.5))
    else:  # pragma: no cover - argparse restricts the choices
        raise AssertionError(args.bench_target)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        _print_table(result)
    return 0


def _fetch_detector(args: argparse.Namespace) -> int:
    from facealign_ros.face.detector import DetectorError, fetch_detector_model

    try:
        path = fetch_detector_model()
    except DetectorError as exc:
        sys.stderr.write(f"facealign fetch-detector: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps({"model": str(path)}) + "\n")
    else:
        sys.stdout.write(f"BlazeFace model: {path}\n")
    return 0


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``KEY=VALUE`` overrides of ``train``/``pretrain`` may follow options.

    argparse takes a positional list only once, so overrides after an option
    (``--init-from X a.b=1``) would be "unrecognized"; they are appended to ``overrides``.
    """
    from training.train import is_override  # argparse only: cheap

    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command in ("train", "pretrain") and all(map(is_override, extra)):
            args.overrides = [*(args.overrides or []), *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``facealign`` with ``argv`` (defaults to ``sys.argv[1:]``); returns the exit code."""
    args = parse_args(build_parser(), argv)
    if args.command == "bench":
        return _bench(args)
    if args.command == "train":
        from training.train import run_train

        return run_train(args)
    if args.command == "pretrain":
        from training.ssmer.cli import run_pretrain

        return run_pretrain(args)
    if args.command == "eval":
        from training.evaluate import run_eval

        return run_eval(args)
    if args.command == "replay":
        from training.replay import run_replay

        return run_replay(args)
    if args.command == "demo":
        from training.replay import run_demo

        return run_demo(args)
    if args.command == "synth":
        from training.synth.cli import run_synth

        return run_synth(args)
    if args.command == "label":
        from training.label.cli import run_label

        return run_label(args)
    if args.command == "fetch-detector":
        return _fetch_detector(args)
    if args.command == "recover":
        return _recover(args)
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
