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

Variants: ``--event-only`` fine-tunes with the RGB branch always replaced by its missing token
(the event encoder alone carries the landmarks, the setting SSMER is for); ``--only 10:scratch,
10:all3`` runs a subset; ``--encoders DIR`` takes the pretrained encoders of an earlier
experiment folder instead of pretraining again; ``--encoder-lr-scale 0.1`` fine-tunes a
pretrained encoder at a tenth of the LR (``optim.lr_scales``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("training.experiments.label_efficiency")
ROOT = Path(__file__).resolve().parents[2]
PRETRAIN_VIEWS = {
    "all3": "[event_frame,time_surface,voxel]",
    "frame": "[event_frame,event_frame]",
    "time_surface": "[time_surface,time_surface]",
    "voxel": "[voxel,voxel]",
    "all4": "[event_frame,time_surface,voxel,all]",  # + the full stack fine-tuning sees
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
    train_glob: str
    test_glob: str
    pretrain_steps: int
    pretrain_batch: int
    finetune_steps: int
    finetune_batch: int
    threads: int
    seed: int
    event_only: bool = False
    encoders: Path | None = None
    only: tuple[tuple[float, str], ...] | None = None
    encoder_lr_scale: float = 1.0


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


def pretrain(s: Settings, name: str) -> Path:
    """SSMER variant ``name`` on the train bags; returns its encoder file."""
    out = (s.encoders or s.out) / f"ssmer_{name}"
    enc = out / "encoder.safetensors"
    if enc.is_file():
        return enc
    if s.encoders is not None:
        raise FileNotFoundError(f"--encoders: {enc} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        *_facealign(), "pretrain", "--bags", s.train_glob,
        "--config", "training/configs/ssmer_lite.yaml", "--no-progress",
        f"data.views={PRETRAIN_VIEWS[name]}", f"schedule.steps={s.pretrain_steps}",
        f"schedule.warmup_steps={max(1, s.pretrain_steps // 20)}",
        f"data.batch_size={s.pretrain_batch}", "data.num_workers=1",
        f"run.threads={s.threads}", f"run.out_dir={out}", f"run.seed={s.seed}",
        "run.tensorboard=false", "run.checkpoint_every=200",
    ]  # fmt: skip
    _run(cmd, out / "run.log", s.threads)
    return enc


def _gentle(s: Settings, init: str) -> bool:
    """A pretrained encoder fine-tuned at a scaled LR."""
    return init != "scratch" and s.encoder_lr_scale != 1.0


def variant(s: Settings, init: str) -> str:
    """Name of a fine-tune's initialisation: ``init``, plus ``_lr<scale>`` when scaled."""
    return f"{init}_lr{s.encoder_lr_scale:g}" if _gentle(s, init) else init


def finetune(s: Settings, fraction: float, init: str) -> Path:
    """Lite CMFA with ``fraction`` of the labels from ``init``; returns the model file."""
    gentle = _gentle(s, init)
    out = s.out / f"cmfa_{int(round(fraction * 100))}pct_{variant(s, init)}"
    model = out / "model.safetensors"
    if model.is_file():
        return model
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        *_facealign(), "train", "--config", "training/configs/lite.yaml", "--no-progress",
        f"data.options.paths.train=['{s.train_glob}']",
        f"data.options.label_fraction={fraction}",
        f"schedule.steps={s.finetune_steps}",
        f"schedule.warmup_steps={max(1, s.finetune_steps // 20)}",
        f"data.batch_size={s.finetune_batch}", "data.num_workers=1", "data.val_limit=128",
        f"run.threads={s.threads}", f"run.out_dir={out}", f"run.seed={s.seed}",
        "run.eval_every=0", "run.tensorboard=false", "run.checkpoint_every=200",
    ]  # fmt: skip
    if s.event_only:  # samples without RGB (its missing token); events never dropped
        cmd += ["data.options.use_rgb=false", "model.overrides.p_drop_event=0.0"]
    if init != "scratch":
        cmd += ["--init-event-encoder", str(pretrain(s, init))]
    if gentle:  # the pretrained encoder fine-tuned at a fraction of the LR
        cmd += [f"optim.lr_scales.event_backbone={s.encoder_lr_scale:g}"]
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


def table(rows: list[dict]) -> str:
    """Markdown table of the results (NME normalised by inter-ocular distance)."""
    lines = [
        "| labels | initialisation | fused NME | event-only NME | event FR@0.10 | "
        "event NME / scratch |",
        "|---|---|---|---|---|---|",
    ]
    scratch = {r["fraction"]: r["event_nme"] for r in rows if r["init"] == "scratch"}
    for r in rows:
        ratio = (
            r["event_nme"] / scratch[r["fraction"]] if r["fraction"] in scratch else float("nan")
        )
        lines.append(
            f"| {r['fraction']:.0%} | {r['init']} | {r['fused_nme']:.4f} | {r['event_nme']:.4f} "
            f"| {r['event_fr10']:.3f} | {ratio:.3f} |"
        )
    return "\n".join(lines) + "\n"


def run(s: Settings, jobs: int) -> list[dict]:
    """Every stage; returns one result row per fine-tune."""
    s.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    finetunes = FINETUNES if s.only is None else s.only
    views = [v for v in PRETRAIN_VIEWS if any(init == v for _, init in finetunes)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        encoders = list(pool.map(lambda n: pretrain(s, n), views))
        models = list(pool.map(lambda fi: finetune(s, *fi), finetunes))
        reports = list(pool.map(lambda m: evaluate(s, m), models))
    rows = []
    for (fraction, init), model, rep in zip(finetunes, models, reports, strict=True):
        by = rep["by_mode"]
        rows.append({
            "fraction": fraction, "model": str(model),
            "init": variant(s, init),
            "fused_nme": by["fused"]["nme"], "event_nme": by["event"]["nme"],
            "fused_fr10": by["fused"]["fr10"], "event_fr10": by["event"]["fr10"],
            "samples": rep["num_samples"],
        })  # fmt: skip
    rates = {}
    for name, enc in zip(views, encoders, strict=True):
        lines = (enc.parent / "log.jsonl").read_text(encoding="utf-8").splitlines()
        rates[name] = sum(json.loads(x)["windows_per_s"] for x in lines) / max(1, len(lines))
    result = {
        "settings": {k: str(v) for k, v in vars(s).items()},
        "rows": rows,
        "pretrain_windows_per_s": rates,
        "wall_s": time.perf_counter() - t0,
    }
    (s.out / "results.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (s.out / "results.md").write_text(table(rows), encoding="utf-8")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/label_eff"))
    p.add_argument("--train", default="data/synth/train_*", help="train bags (glob)")
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
    a = p.parse_args(argv)
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    s = Settings(
        a.out, a.train, a.test, a.pretrain_steps, a.pretrain_batch, a.finetune_steps,
        a.finetune_batch, a.threads, a.seed, a.event_only, a.encoders, only, a.encoder_lr_scale,
    )  # fmt: skip
    rows = run(s, max(1, a.jobs))
    sys.stdout.write(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
