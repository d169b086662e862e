"""The SSMER pretraining loop: SimSiam over streamed windows, checkpoints, exact resume, DDP.

Outputs in ``run.out_dir``: ``checkpoints/step_XXXXXXX/`` (model + optimizer/scheduler/RNG
state, written atomically every ``run.checkpoint_every`` steps; a kill loses at most the steps
since the last one), ``log.jsonl`` (one line per ``run.log_every`` steps: loss, collapse ratio,
lr, windows/s), ``tb/`` (TensorBoard, optional), ``config.yaml`` and ``encoder.safetensors``
(the final SimSiam weights; ``facealign train --init-event-encoder`` takes its ``encoder.*``).

Exactness: windows and their views depend only on (seed, shard, position) (see
:mod:`training.ssmer.stream`); weights are initialised from the seed. A run resumed from the
checkpoint of step k reaches the same weights as an uninterrupted one on the same machine.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from facealign_ros.model.config import CMFAConfig
from training.ssmer.config import SSMERConfig
from training.ssmer.model import SimSiam, collapse_ratio, dense_simsiam_loss, simsiam_loss
from training.ssmer.sources import Source
from training.ssmer.stream import WindowStream
from training.ssmer.views import ViewAugment
from training.trainer import build
from training.trainer.config import dump_config
from training.trainer.context import weights_digest
from training.trainer.distributed import DistEnv, barrier, run_on_device
from training.trainer.sampler import derive_seed
from training.trainer.state import (
    MODEL_FILE,
    ResumeError,
    load_training_state,
    optimizer_to_flat,
    refuse_changed_optim,
    restore_run_state,
    resume_path,
    rng_state,
    save_training_checkpoint,
)

LOG = logging.getLogger(__name__)
FORMAT = "facealign_ros.ssmer"
ENCODER_FILE = "encoder.safetensors"
StepHook = Callable[[int, Mapping[str, float]], None]


@dataclass
class PretrainResult:
    """Outcome of :meth:`Pretrainer.fit`.

    Attributes:
        out_dir: run directory.
        encoder_path: the final SSMER model (rank 0; None elsewhere).
        step: steps done.
        windows_per_s: windows (samples) per second per process over this invocation,
            data loading included.
        history: logged scalars, one dict per log line.
        digest: SHA-256 of the weights (equal for identical weights).
    """

    out_dir: Path
    encoder_path: Path | None
    step: int
    windows_per_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    digest: str = ""


def read_ssmer_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a saved SSMER model (network, preprocessing, views, step...).

    Raises:
        ValueError: not a readable SSMER file.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
    except Exception as exc:
        raise ValueError(f"{path}: cannot read safetensors ({exc})") from exc
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not an SSMER model (format {header.get('format')!r})")
    return json.loads(header["meta"])


class Pretrainer:
    """Runs SSMER pretraining as configured.

    Args:
        cfg: the configuration.
        sources: event sources (checked by :func:`~training.ssmer.sources.find_sources`).
        command: command line recorded in the outputs.
        env: process placement (torchrun), default from the environment.
        on_step: called on every rank after each step with ``(step, scalars)``; an exception
            aborts the run like a kill (tests use it).
    """

    def __init__(
        self,
        cfg: SSMERConfig,
        sources: list[Source],
        *,
        command: str = "",
        env: DistEnv | None = None,
        on_step: StepHook | None = None,
    ) -> None:
        self.cfg, self.sources, self.command = cfg, sources, command
        self.env = env or DistEnv.from_env()
        self.on_step = on_step
        self.out_dir = Path(cfg.run.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.spec = cfg.data.spec
        self.net: CMFAConfig = cfg.model.network(self.spec)

    # ------------------------------------------------------------------ files
    def _metadata(self, step: int) -> dict[str, Any]:
        return {
            "network": self.net.to_dict(),
            "preprocessing": self.spec.to_dict(),
            "representations": list(self.spec.representations),
            "views": list(self.cfg.data.views),
            "proj_dim": self.cfg.model.proj_dim,
            "pred_dim": self.cfg.model.pred_dim,
            "dense": self._dense_settings(),
            "step": step,
            "training_command": self.command,
            "bags": [f"{s.path.name}:{s.topic}" for s in self.sources],
            "stream": self._stream_settings(),
        }

    def _dense_settings(self) -> dict[str, Any] | None:
        """The dense term's settings (None when it is off)."""
        m = self.cfg.model
        if not m.dense:
            return None
        return {"weight": m.dense_weight, "grid": m.dense_grid, "dim": m.dense_dim}

    def _stream_settings(self) -> dict[str, Any]:
        """What defines the data stream (a resume with other values is not exact)."""
        d = self.cfg.data
        return {
            "sources": [f"{s.path}:{s.topic}" for s in self.sources],
            "world_size": self.env.world_size,
            "num_workers": d.num_workers,
            "batch_size": d.batch_size,
            "stride_ms": d.stride_ms,
            "interleave": d.interleave,
            "shuffle_buffer": d.shuffle_buffer,
            "augment": dict(d.augment),
            "seed": self.cfg.run.seed,
        }

    def _write_model(self, model: SimSiam, path: Path, step: int) -> None:
        header = {"format": FORMAT, "format_version": "1", "meta": json.dumps(self._metadata(step))}
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(path), header)

    def _restore(self, ckpt: Path, model: SimSiam, opt: Any, sched: Any, scaler: Any) -> int:
        state = load_training_state(ckpt)
        meta = read_ssmer_metadata(ckpt / MODEL_FILE)
        if CMFAConfig.from_dict(meta["network"]) != self.net:
            raise ResumeError(f"{ckpt}: its network config differs from this run's")
        if meta.get("views") != list(self.cfg.data.views):
            raise ResumeError(f"{ckpt}: views {meta.get('views')} differ from this run's")
        if meta.get("dense") != self._dense_settings():
            raise ResumeError(
                f"{ckpt}: dense term {meta.get('dense')} differs from this run's "
                f"{self._dense_settings()}"
            )
        if meta.get("preprocessing") != self.spec.to_dict():
            raise ResumeError(f"{ckpt}: its input preprocessing differs from this run's")
        then, now = meta.get("stream", {}), self._stream_settings()
        if changed := sorted(k for k in now if then.get(k) != now[k]):
            LOG.warning(
                "resuming with other %s: the data stream differs from the interrupted run's "
                "(training goes on, but not bit-exactly)",
                ", ".join(changed),
            )
        refuse_changed_optim(
            ckpt, state, self.cfg.to_dict()["optim"], "start a new run in another run.out_dir"
        )
        try:
            restore_run_state(ckpt, state, model, opt, sched, scaler)
        except RuntimeError as exc:  # e.g. other model.proj_dim / pred_dim: heads of other sizes
            first = str(exc).strip().splitlines()[0]
            raise ResumeError(
                f"{ckpt}: its weights do not fit this run's model (model.proj_dim/pred_dim "
                f"changed?): {first}"
            ) from exc
        LOG.info("resumed from %s at step %d", ckpt, state.step)
        return state.step

    def _resume_path(self) -> Path | None:
        return resume_path(self.cfg.run.resume, self.ckpt_dir)

    def _save(self, model: SimSiam, opt: Any, sched: Any, scaler: Any, step: int) -> None:
        if self.env.is_main:
            opt_t, opt_meta = optimizer_to_flat(opt.state_dict())
            rng_t, rng_meta = rng_state()
            meta = {
                "optimizer": opt_meta,
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_meta,
                "config": self.cfg.to_dict(),
                "training_command": self.command,
            }
            save_training_checkpoint(
                self.ckpt_dir,
                step,
                lambda p: self._write_model(model, p, step),
                {**opt_t, **rng_t},
                meta,
                keep=self.cfg.run.keep_checkpoints,
            )
        barrier(self.env)

    # ------------------------------------------------------------------ fit
    def fit(self) -> PretrainResult:
        """Pretrain to ``schedule.steps`` (resuming if configured)."""
        return run_on_device(self.cfg.run, self.env, self._fit)

    def _fit(self, device: torch.device) -> PretrainResult:
        cfg, env = self.cfg, self.env
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.run.seed)
            m = cfg.model
            model = SimSiam(self.net, m.proj_dim, m.pred_dim, m.dense_dim if m.dense else 0)
        model.to(device)
        opt, sched, scaler, amp = build.build_optimization(model, cfg.optim, cfg.schedule, device)
        cuda = device.type == "cuda"
        resume = self._resume_path()
        step = self._restore(resume, model, opt, sched, scaler) if resume else 0
        ddp: nn.Module = model
        if env.enabled:
            if cuda:
                ddp = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ddp = DistributedDataParallel(ddp, device_ids=[device.index] if cuda else None)
        data = cfg.data
        stream = WindowStream(
            self.sources,
            self.spec,
            data.views,
            ViewAugment.from_dict(data.augment),
            seed=cfg.run.seed,
            batch_size=data.batch_size,
            rank=env.rank,
            world_size=env.world_size,
            num_workers=data.num_workers,
            start_step=step,
            stride_ms=data.stride_ms,
            interleave=data.interleave,
            shuffle_buffer=data.shuffle_buffer,
            box_source=data.box_source,
            detector_model=data.detector_model,
            dense_grid=cfg.model.dense_grid if cfg.model.dense else 0,
        )
        loader = DataLoader(
            stream, batch_size=data.batch_size, num_workers=data.num_workers, pin_memory=cuda
        )
        if env.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        logger = _RunLog(self.out_dir, cfg, env, step)
        start_step, t0 = step, time.perf_counter()
        try:
            batches = iter(loader)
            while step < cfg.schedule.steps:
                batch = next(batches)
                views, points = batch if isinstance(batch, list | tuple) else (batch, None)
                views = views.to(device, non_blocking=True)
                if points is not None:
                    points = points.to(device, non_blocking=True)
                scalars = self._step(ddp, opt, sched, scaler, views, points, step, amp)
                step += 1
                logger.add(step, scalars, views.shape[0])
                if self.on_step is not None:
                    self.on_step(step, scalars)
                if step % cfg.run.checkpoint_every == 0 and step < cfg.schedule.steps:
                    self._save(model, opt, sched, scaler, step)
        finally:
            logger.close()
        elapsed = max(time.perf_counter() - t0, 1e-9)
        rate = (step - start_step) * data.batch_size / elapsed
        if env.enabled:  # DDP syncs buffers (BatchNorm statistics) only before a forward
            for buf in model.buffers():
                torch.distributed.broadcast(buf, src=0)
        self._save(model, opt, sched, scaler, step)
        final = None
        if env.is_main:
            final = self.out_dir / ENCODER_FILE
            self._write_model(model, final, step)
            LOG.info("wrote %s (step %d, %.1f windows/s per process)", final, step, rate)
        barrier(env)
        return PretrainResult(
            self.out_dir, final, step, rate, logger.history, weights_digest(model)
        )

    def _step(
        self,
        ddp: nn.Module,
        opt: torch.optim.Optimizer,
        sched: Any,
        scaler: Any,
        views: torch.Tensor,
        points: torch.Tensor | None,
        step: int,
        amp: str,
    ) -> dict[str, float]:
        """One optimizer step on ``(B, V, C, S, S)`` views (and ``(B, V, K, 2)`` dense points)."""
        torch.manual_seed(derive_seed(self.cfg.run.seed, step, self.env.rank))
        ddp.train()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        ctx = torch.autocast("cuda", dtype=dtype) if dtype is not None else nullcontext()
        with ctx:
            out = ddp(views) if points is None else ddp(views, points)
        z, p, h = out[:3]
        loss = pooled = simsiam_loss(z.float(), p.float())
        dense = None
        if points is not None:
            pts = points.transpose(0, 1)
            dense = dense_simsiam_loss(out[3].float(), out[4].float(), pts)
            loss = pooled + self.cfg.model.dense_weight * dense
        build.require_finite_loss(loss, step, float(sched.get_last_lr()[0]))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        build.drop_frozen_grads(opt, sched.last_epoch)
        scaler.unscale_(opt)
        gnorm = 0.0
        if self.cfg.optim.grad_clip > 0:
            gnorm = float(nn.utils.clip_grad_norm_(ddp.parameters(), self.cfg.optim.grad_clip))
        scaler.step(opt)
        scaler.update()
        lr = opt.param_groups[0]["lr"]
        sched.step()
        pairs = z.shape[0] * (z.shape[0] - 1) // 2
        extra = {} if dense is None else {"dense_loss_per_pair": float(dense.detach()) / pairs}
        return {
            "loss": float(loss.detach()),
            "loss_per_pair": float(pooled.detach()) / pairs,
            **extra,
            "collapse_ratio": collapse_ratio(h),
            "collapse_ratio_pred": collapse_ratio(p),
            "grad_norm": gnorm,
            "lr": lr,
        }


class _RunLog:
    """``log.jsonl`` + TensorBoard + progress bar on rank 0; averages over ``log_every`` steps."""

    def __init__(self, out_dir: Path, cfg: SSMERConfig, env: DistEnv, step: int) -> None:
        self.cfg, self.env, self.history = cfg, env, []
        self.sums: dict[str, float] = {}
        self.count = self.windows = 0
        self.tick = time.perf_counter()
        self.writer = self.pbar = self.file = None
        self.low_streak = 0
        self.best = 0.0
        if not env.is_main:
            return
        self.file = open(out_dir / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        if cfg.run.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is in the train extra
                LOG.warning("tensorboard is not installed: no TensorBoard logs")
            else:
                self.writer = SummaryWriter(str(out_dir / "tb"), purge_step=step or None)
        if cfg.run.progress:
            from tqdm.auto import tqdm

            self.pbar = tqdm(total=cfg.schedule.steps, initial=step, unit="step")

    def add(self, step: int, scalars: Mapping[str, float], windows: int) -> None:
        """Accumulate one step; write a line every ``run.log_every`` steps."""
        for k, v in scalars.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        self.windows += windows
        if self.pbar is not None:
            self.pbar.update(1)
        if step % self.cfg.run.log_every and step != self.cfg.schedule.steps:
            return
        now = time.perf_counter()
        line = {k: v / self.count for k, v in self.sums.items()}
        line["windows_per_s"] = self.windows / max(now - self.tick, 1e-9)
        line["step"] = step
        self.history.append(line)
        self.sums, self.count, self.windows, self.tick = {}, 0, 0, now
        self._collapse_check(line)
        if not self.env.is_main:
            return
        LOG.info(
            "step %d loss/pair %.4f feature spread %.3f lr %.2e %.1f windows/s",
            step,
            line["loss_per_pair"],
            line["collapse_ratio"],
            line["lr"],
            line["windows_per_s"],
        )
        if self.file is not None:
            self.file.write(json.dumps(line) + "\n")
            self.file.flush()
        if self.writer is not None:
            for k, v in line.items():
                if k != "step":
                    self.writer.add_scalar(f"ssmer/{k}", v, step)

    def _collapse_check(self, line: Mapping[str, float]) -> None:
        """Warn when the encoder features' spread falls far below its best (collapse).

        Training spreads the features (0.40 -> 0.51 over 600 lite steps on synthetic windows);
        a collapse shows as the ratio falling back: below a quarter of its best for three logs
        in a row.
        """
        ratio = line["collapse_ratio"]
        self.best = max(self.best, ratio)
        low = self.best >= 0.2 and ratio < 0.25 * self.best
        self.low_streak = self.low_streak + 1 if low else 0
        if self.low_streak >= 3 and self.env.is_main:
            LOG.warning(
                "collapse: encoder feature spread %.3f, best %.3f, for %d logs (lower optim.lr?)",
                ratio,
                self.best,
                self.low_streak,
            )

    def close(self) -> None:
        """Close files, writer and progress bar."""
        for h in (self.file, self.writer, self.pbar):
            if h is not None:
                h.close()
