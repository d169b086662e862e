"""Label-efficiency experiment: CMFA fine-tuned from SSMER vs from scratch, 10% / 100% labels.

Pretrains SSMER variants on the *train* bags' events (labels unused): all three representations
(event frame / time surface / voxel grid, pairs summed), the same plus a fourth view with every
channel (the input fine-tuning sees), and one ablation per representation (two differently
augmented views of that representation alone). Then fine-tunes the lite CMFA with the
labels of 10% of the train recordings (a fixed seeded subset, the same for every run) and of all
of them, from each initialisation, and evaluates every model on the held-out *test* seeds, fused
and event-only. Every run lives in its own folder under ``--out`` and is skipped when done, so
a killed experiment continues where it stopped.

    python -m training.experiments.label_efficiency --out runs/label_eff --jobs 2

Writes ``--out``/``results.json`` and ``--out``/``results.md`` (the table in docs/SSMER.md).

Variants: ``--event-only`` fine-tunes with the RGB branch always replaced by its missing token (the
event encoder alone carries the landmarks, the setting SSMER is for); ``--only 10:scratch,
10:all3`` runs a subset; ``--encoders DIR`` takes the pretrained encoders of an earlier experiment
folder instead of pretraining again; ``--train-is-labelled`` says ``--train`` holds only the
labelled recordings of the one fraction in ``--only`` (the subset
:mod:`training.experiments.labelled_set` lists, made alone on a machine that fine-tunes);
``--no-eval`` fine-tunes only (a later run without it finds the models and evaluates them);
``--pretrain-extra GLOB`` (repeatable) pretrains on further unlabelled recordings beside the
*train* bags (a rig's many unlabelled recordings; the fine-tunes' labelled subset is unchanged),
while ``--train A B`` makes both one pool, the label fraction taken of all of it;
``--encoder-lr-scale 0.1`` fine-tunes a pretrained encoder at a tenth of the LR
(``optim.lr_scales``); ``--encoder-freeze-steps 300`` holds it for the first 300 fine-tuning steps
(``optim.freeze_steps``: the decoder first learns on the pretrained features, then all train;
folders ``…_frz300``); ``--only 10:all3det`` pretrains all3 on windows centred on the face
detector's box in the RGB frames instead of the event activity (``data.box_source=detector``; not
in the default set; ``10:all3detaug`` the same with stronger view augmentation, nearer the
authors' MoCo-v2 views; ``10:all3detdense`` all3det plus the dense term that matches the
feature maps of the views at the same scene points, ``model.dense_weight``); ``--seeds 0,1`` and
``--modes fused,event`` run every fine-tune per seed and mode (folders ``…_event``, ``…_s1``;
the table then adds the means over seeds); ``--workers`` /
``--pretrain-workers`` set the data-loader workers per run (a GPU machine with many cores:
``label_efficiency_gpu.sh`` beside this file). Fine-tunes from scratch start while the encoder
pretrains (``--jobs`` runs at once), and the results files are rewritten after every evaluation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from training.experiments.results_table import table

LOG = logging.getLogger("training.experiments.label_efficiency")
ROOT = Path(__file__).resolve().parents[2]
PRETRAIN_VIEWS = {
    "all3": "[event_frame,time_surface,voxel]",
    "frame": "[event_frame,event_frame]",
    "time_surface": "[time_surface,time_surface]",
    "voxel": "[voxel,voxel]",
    "all4": "[event_frame,time_surface,voxel,all]",  # + the full stack fine-tuning sees
    "all3det": "[event_frame,time_surface,voxel]",  # all3 on the face detector's boxes
    "all3detaug": "[event_frame,time_surface,voxel]",  # all3det, stronger view augmentation
    "all3detdense": "[event_frame,time_surface,voxel]",  # all3det + the dense (per-point) term
}
_DETECTOR_BOXES = ["data.box_source=detector"]  # needs `facealign fetch-detector` once
PRETRAIN_EXTRA = {  # further overrides of a variant's `facealign pretrain`
    "all3det": _DETECTOR_BOXES,
    # closer to the authors' MoCo-v2 views (RandomResizedCrop area 0.2-1, blur p 0.5): crops
    # 0.61-1.65 box sides, larger shifts, more blur and contrast, more event drop and noise
    "all3detaug": [
        *_DETECTOR_BOXES,
        "data.augment.scale=0.5",
        "data.augment.shift=0.15",
        "data.augment.blur_prob=0.5",
        "data.augment.gain=1.5",
        "data.augment.event_drop_max=0.5",
        "data.augment.event_noise_max=0.2",
    ],
    # + features of the same scene point agree across views (equivariant, not only invariant)
    "all3detdense": [*_DETECTOR_BOXES, "model.dense_weight=1.0"],
}
FINETUNES = (  # (label fraction, initialisation)
    (0.1, "scratch"),
    (0.1, "all3"),
    (0.1, "frame"),
    (0.1, "time_surface"),
    (0.1, "voxel"),
    (0.1, "all4"),
    (1.0, "scratch"),
    (1.0, "all3"),
)


@dataclass(frozen=True)
class Settings:
    """Experiment sizes (defaults fit a 2-core CPU in about an hour)."""

    out: Path
    train_globs: tuple[str, ...]  # the recordings the label fraction is taken of
    test_glob: str
    pretrain_steps: int
    pretrain_batch: int
    finetune_steps: int
    finetune_batch: int
    threads: int
    seed: int
    event_only: bool = False  # every fine-tune event-only (``modes`` = event)
    encoders: Path | None = None
    only: tuple[tuple[float, str], ...] | None = None
    encoder_lr_scale: float = 1.0
    seeds: tuple[int, ...] = ()  # fine-tuning seeds (empty: ``seed`` alone)
    modes: tuple[str, ...] = ()  # fine-tuning modes, fused / event (empty: from event_only)
    workers: int = 1  # data-loader workers per fine-tune
    pretrain_workers: int = 1  # data-loader workers per pretraining
    encoder_freeze_steps: int = 0  # fine-tuning steps a pretrained encoder is held first
    train_is_labelled: bool = False  # ``train_globs`` name the labelled subset alone
    run_eval: bool = True  # False: fine-tunes only (a later run evaluates them)
    pretrain_extra: tuple[str, ...] = ()  # further unlabelled bags (globs) for pretraining only

    def finetune_seeds(self) -> tuple[int, ...]:
        """Seeds of the fine-tunes."""
        return self.seeds or (self.seed,)

    def finetune_modes(self) -> tuple[str, ...]:
        """Fine-tuning modes (``fused``, ``event``)."""
        return self.modes or (("event",) if self.event_only else ("fused",))


@dataclass(frozen=True)
class Finetune:
    """One fine-tune: label fraction, initialisation, event-only or fused, seed."""

    fraction: float
    init: str
    event_only: bool
    seed: int


def finetunes(s: Settings) -> list[Finetune]:
    """Every fine-tune of the experiment, in the order they are started.

    The first run of each pretrained initialisation comes first (its job pretrains the encoder),
    then the runs from scratch (they need no encoder, so they train while it pretrains), then
    the rest.
    """
    base = FINETUNES if s.only is None else s.only
    runs = [
        Finetune(fraction, init, mode == "event", seed)
        for seed in s.finetune_seeds()
        for mode in s.finetune_modes()
        for fraction, init in base
    ]
    first: dict[str, Finetune] = {}
    for r in runs:
        if r.init != "scratch":
            first.setdefault(r.init, r)
    leaders = list(first.values())
    scratch = [r for r in runs if r.init == "scratch"]
    return leaders + scratch + [r for r in runs if r not in leaders and r not in scratch]


def _run(cmd: list[str], log: Path, threads: int) -> None:
    """Run a ``facealign`` command, output to ``log``; raises on failure."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
    LOG.info("$ %s", " ".join(cmd))
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    LOG.info("done in %.0f s: %s", time.perf_counter() - t0, log)


def _facealign() -> list[str]:
    return [sys.executable, "-m", "facealign_ros.cli"]


_PRETRAIN_LOCKS: dict[str, threading.Lock] = {name: threading.Lock() for name in PRETRAIN_VIEWS}


def pretrain(s: Settings, name: str) -> Path:
    """SSMER variant ``name`` on the train bags; returns its encoder file.

    Thread-safe: fine-tunes that need the same encoder wait for one pretraining.
    """
    with _PRETRAIN_LOCKS[name]:
        return _pretrain(s, name)


def _pretrain(s: Settings, name: str) -> Path:
    out = (s.encoders or s.out) / f"ssmer_{name}"
    enc = out / "encoder.safetensors"
    if enc.is_file():
        return enc
    if s.encoders is not None:
        raise FileNotFoundError(f"--encoders: {enc} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        *_facealign(), "pretrain", "--bags", *s.train_globs, *s.pretrain_extra,
        "--config", "training/configs/ssmer_lite.yaml", "--no-progress",
        f"data.views={PRETRAIN_VIEWS[name]}", f"schedule.steps={s.pretrain_steps}",
        f"schedule.warmup_steps={max(1, s.pretrain_steps // 20)}",
        f"data.batch_size={s.pretrain_batch}", f"data.num_workers={s.pretrain_workers}",
        f"run.threads={s.threads}", f"run.out_dir={out}", f"run.seed={s.seed}",
        "run.tensorboard=false", "run.checkpoint_every=200", *PRETRAIN_EXTRA.get(name, []),
    ]  # fmt: skip
    _run(cmd, out / "run.log", s.threads)
    return enc


def _gentle(s: Settings, init: str) -> bool:
    """A pretrained encoder fine-tuned at a scaled LR."""
    return init != "scratch" and s.encoder_lr_scale != 1.0


def _frozen_first(s: Settings, init: str) -> bool:
    """A pretrained encoder held for the first fine-tuning steps (frozen warm-up)."""
    return init != "scratch" and s.encoder_freeze_steps > 0


def variant(s: Settings, init: str) -> str:
    """Name of a fine-tune's initialisation: ``init`` [``_lr<scale>``] [``_frz<steps>``]."""
    name = f"{init}_lr{s.encoder_lr_scale:g}" if _gentle(s, init) else init
    return f"{name}_frz{s.encoder_freeze_steps}" if _frozen_first(s, init) else name


def run_dir(s: Settings, ft: Finetune) -> Path:
    """Folder of a fine-tune: ``cmfa_<pct>pct_<variant>[_event][_s<seed>]``."""
    name = f"cmfa_{int(round(ft.fraction * 100))}pct_{variant(s, ft.init)}"
    name += "_event" if ft.event_only else ""
    name += f"_s{ft.seed}" if ft.seed != s.seed else ""
    return s.out / name


def finetune(s: Settings, ft: Finetune) -> Path:
    """Lite CMFA with ``ft.fraction`` of the labels from ``ft.init``; returns the model file."""
    out = run_dir(s, ft)
    model = out / "model.safetensors"
    if model.is_file():
        return model
    encoder = pretrain(s, ft.init) if ft.init != "scratch" else None
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        *_facealign(), "train", "--config", "training/configs/lite.yaml", "--no-progress",
        f"data.options.paths.train=[{', '.join(repr(g) for g in s.train_globs)}]",
        f"data.options.label_fraction={1.0 if s.train_is_labelled else ft.fraction}",
        f"schedule.steps={s.finetune_steps}",
        f"schedule.warmup_steps={max(1, s.finetune_steps // 20)}",
        f"data.batch_size={s.finetune_batch}", f"data.num_workers={s.workers}",
        "data.val_split=",  # the held-out test bags are evaluated below; no model selection
        f"run.threads={s.threads}", f"run.out_dir={out}", f"run.seed={ft.seed}",
        "run.eval_every=0", "run.tensorboard=false", "run.checkpoint_every=200",
    ]  # fmt: skip
    if ft.event_only:  # samples without RGB (its missing token); events never dropped
        cmd += ["data.options.use_rgb=false", "model.overrides.p_drop_event=0.0"]
    if encoder is not None:
        cmd += ["--init-event-encoder", str(encoder)]
    if _gentle(s, ft.init):  # the pretrained encoder fine-tuned at a fraction of the LR
        cmd += [f"optim.lr_scales.event_backbone={s.encoder_lr_scale:g}"]
    if _frozen_first(s, ft.init):  # the decoder learns on the pretrained features first
        cmd += [f"optim.freeze_steps.event_backbone={s.encoder_freeze_steps}"]
    _run(cmd, out / "run.log", s.threads)
    return model


def evaluate(s: Settings, model: Path) -> dict:
    """Test-split report of ``model`` (fused and event-only), cached next to it."""
    report = model.parent / "test_eval.json"
    if not report.is_file():
        cmd = [
            *_facealign(), "eval", "--model", str(model), s.test_glob, "--split", "test",
            "--modes", "fused,event", f"--threads={s.threads}", "--out", str(model.parent / "eval"),
        ]  # fmt: skip
        _run(cmd, model.parent / "run.log", s.threads)
        os.replace(model.parent / "eval" / "eval.json", report)
    return json.loads(report.read_text(encoding="utf-8"))


def _pretrain_rates(s: Settings, names: Sequence[str]) -> dict[str, float]:
    """Mean logged windows/s of the pretrainings ``names`` that have a log (per process)."""
    rates = {}
    for name in names:
        log = (s.encoders or s.out) / f"ssmer_{name}" / "log.jsonl"
        if log.is_file():
            lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if x]
            rates[name] = statistics.fmean(x["windows_per_s"] for x in lines) if lines else 0.0
    return rates


def _write(s: Settings, plan: list[Finetune], rows: list[dict], t0: float) -> None:
    """``results.json`` and ``results.md`` of the rows so far (``plan``: every fine-tune)."""
    encoders = list(dict.fromkeys(ft.init for ft in plan if ft.init != "scratch"))
    result = {
        "settings": {k: str(v) for k, v in vars(s).items()},
        "rows": rows,
        "pretrain_windows_per_s": _pretrain_rates(s, encoders),
        "wall_s": time.perf_counter() - t0,
    }
    (s.out / "results.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (s.out / "results.md").write_text(table(rows), encoding="utf-8")


def run(s: Settings, jobs: int) -> list[dict]:
    """Every stage; returns one result row per fine-tune.

    ``jobs`` fine-tunes run at once, each followed by its evaluation (unless ``run_eval`` is
    False: then nothing is evaluated and the results files are left as they are); the results
    files are rewritten after every evaluation, so a stopped experiment keeps what it finished.
    """
    s.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    plan = finetunes(s)
    rows: list[dict] = []
    lock = threading.Lock()

    def one(ft: Finetune) -> None:
        model = finetune(s, ft)
        if not s.run_eval:
            return
        rep = evaluate(s, model)
        by = rep["by_mode"]
        row = {
            "fraction": ft.fraction, "model": str(model), "init": variant(s, ft.init),
            "finetune": "event" if ft.event_only else "fused", "seed": ft.seed,
            "fused_nme": by["fused"]["nme"], "event_nme": by["event"]["nme"],
            "fused_fr10": by["fused"]["fr10"], "event_fr10": by["event"]["fr10"],
            "samples": rep["num_samples"],
        }  # fmt: skip
        with lock:
            rows.append(row)
            _write(s, plan, rows, t0)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for fut in [pool.submit(one, ft) for ft in plan]:
            fut.result()
    if not s.run_eval:
        return rows
    order = {run_dir(s, ft).name: i for i, ft in enumerate(plan)}
    rows.sort(key=lambda r: order[Path(r["model"]).parent.name])
    _write(s, plan, rows, t0)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/label_eff"))
    p.add_argument("--train", nargs="+", default=["data/synth/train_*"], metavar="GLOB",
                   help="train bags (globs): labels of a fraction, events of all")  # fmt: skip
    p.add_argument("--test", default="data/synth/test_*", help="held-out test bags (glob)")
    p.add_argument("--pretrain-steps", type=int, default=600)
    p.add_argument("--pretrain-batch", type=int, default=32)
    p.add_argument("--finetune-steps", type=int, default=600)
    p.add_argument("--finetune-batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--jobs", type=int, default=1, help="runs at once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--event-only", action="store_true", help="fine-tune without the RGB branch")
    p.add_argument("--encoders", type=Path, help="folder of an earlier run's ssmer_* encoders")
    p.add_argument("--only", help="fine-tunes to run, e.g. 10:scratch,10:all3")
    p.add_argument("--encoder-lr-scale", type=float, default=1.0,
                   help="LR multiplier of a pretrained encoder when fine-tuning")  # fmt: skip
    p.add_argument("--encoder-freeze-steps", type=int, default=0,
                   help="fine-tuning steps a pretrained encoder is frozen first")  # fmt: skip
    p.add_argument("--seeds", help="fine-tuning seeds, e.g. 0,1 (default: --seed)")
    p.add_argument("--modes", help="fine-tuning modes, fused and/or event (default: fused)")
    p.add_argument("--workers", type=int, default=1, help="data-loader workers per fine-tune")
    p.add_argument("--pretrain-workers", type=int, default=1,
                   help="data-loader workers per pretraining")  # fmt: skip
    p.add_argument(
        "--train-is-labelled",
        action="store_true",
        help="--train names only the labelled recordings of the one fraction in "
        "--only (made alone, e.g. on another machine: "
        "training.experiments.labelled_set); fine-tunes use all of them",
    )
    p.add_argument(
        "--no-eval",
        action="store_true",
        help="fine-tunes only; a later run without it evaluates them",
    )
    p.add_argument(
        "--pretrain-extra",
        action="append",
        default=[],
        metavar="GLOB",
        help="further unlabelled bags (glob) for pretraining only (repeatable)",
    )
    a = p.parse_args(argv)
    try:
        seeds = tuple(int(x) for x in a.seeds.split(",")) if a.seeds else ()
    except ValueError:
        p.error(f"--seeds {a.seeds!r}: expected integers separated by commas")
    modes = tuple(a.modes.split(",")) if a.modes else ()
    if set(modes) - {"fused", "event"}:
        p.error(f"--modes {a.modes!r}: choose fused and/or event")
    if modes and a.event_only:
        p.error("--event-only and --modes: give one (--event-only is --modes event)")
    if a.workers < 0 or a.pretrain_workers < 0:
        p.error("--workers/--pretrain-workers must be >= 0")
    if not 0 <= a.encoder_freeze_steps < a.finetune_steps:
        p.error("--encoder-freeze-steps must be >= 0 and below --finetune-steps")
    only = None
    if a.only:
        try:
            only = tuple((int(f) / 100, i) for f, i in (x.split(":") for x in a.only.split(",")))
        except ValueError:
            p.error(f"--only {a.only!r}: expected PERCENT:INIT[,PERCENT:INIT...]")
        bad = [i for _, i in only if i != "scratch" and i not in PRETRAIN_VIEWS]
        if bad:
            p.error(
                f"--only: unknown initialisations {bad}; choose scratch or {list(PRETRAIN_VIEWS)}"
            )
    if a.train_is_labelled and only and a.encoders is None and any(i != "scratch" for _, i in only):
        p.error("--train-is-labelled: give --encoders (pretraining on the labelled bags alone "
                "would not be the experiment's SSMER)")  # fmt: skip
    if a.train_is_labelled and (only is None or len({f for f, _ in only}) != 1):
        p.error(
            "--train-is-labelled needs --only with one label fraction (e.g. 10:scratch,10:all3)"
        )
    if a.pretrain_extra and a.encoders is not None:
        p.error("--pretrain-extra and --encoders: the encoders are taken, nothing pretrains")
    if Path.cwd().resolve() != ROOT:  # the runs work in the repository: anchor the user's paths
        here = Path.cwd()
        a.train, a.test = [str(here / g) for g in a.train], str(here / a.test)
        a.pretrain_extra = [str(here / g) for g in a.pretrain_extra]
        a.out = here / a.out
        a.encoders = here / a.encoders if a.encoders is not None else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    s = Settings(
        out=a.out, train_globs=tuple(a.train), test_glob=a.test, pretrain_steps=a.pretrain_steps,
        pretrain_batch=a.pretrain_batch, finetune_steps=a.finetune_steps,
        finetune_batch=a.finetune_batch, threads=a.threads, seed=a.seed, event_only=a.event_only,
        encoders=a.encoders, only=only, encoder_lr_scale=a.encoder_lr_scale, seeds=seeds,
        modes=modes, workers=a.workers, pretrain_workers=a.pretrain_workers,
        encoder_freeze_steps=a.encoder_freeze_steps, train_is_labelled=a.train_is_labelled,
        run_eval=not a.no_eval, pretrain_extra=tuple(a.pretrain_extra),
    )  # fmt: skip
    try:
        rows = run(s, max(1, a.jobs))
    except (RuntimeError, FileNotFoundError) as exc:  # a run failed (its log is named), no encoder
        sys.stderr.write(f"label_efficiency: {exc}\n")
        return 2
    sys.stdout.write(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
