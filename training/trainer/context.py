"""One training run's state and steps: forward/backward, logging, checkpoints, validation."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from facealign_ros.face.landmarks import LandmarkScheme
from facealign_ros.model.checkpoint import save_checkpoint
from facealign_ros.model.cmfa import CMFA
from facealign_ros.model.loss import cmfa_loss, normalized_error
from training.trainer import build
from training.trainer.distributed import barrier
from training.trainer.sampler import EpochSampler, derive_seed
from training.trainer.state import optimizer_to_flat, rng_state, save_training_checkpoint

if TYPE_CHECKING:
    from training.trainer.loop import Trainer

LOG = logging.getLogger("training.trainer.loop")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :meth:`~training.trainer.loop.Trainer.fit`.

    Attributes:
        out_dir: Run directory.
        model_path: Final model checkpoint (rank 0; None elsewhere).
        step: Steps done.
        metrics: Final validation metrics (rank 0).
        history: Logged scalars, one dict per log interval (rank 0).
        weights_digest: SHA-256 of the final state dict (equal on all ranks of a DDP job).
    """

    out_dir: Path
    model_path: Path | None
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    weights_digest: str = ""


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over a model's state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        arr = t.detach().cpu().contiguous()
        h.update(f"{name}:{arr.dtype}:{tuple(arr.shape)};".encode())
        h.update(arr.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class RunContext:
    """State and steps of one :meth:`~training.trainer.loop.Trainer.fit` call.

    Args:
        trainer: The trainer (config, placement, output paths, command, step hook).
        model: The network (unwrapped).
        ddp: What the forward runs: ``model`` or its DistributedDataParallel wrapper.
        opt: The optimizer.
        sched: The LR scheduler.
        scaler: The GradScaler (disabled unless fp16 on CUDA).
        scheme: Landmark scheme (eye indices for the loss, name for checkpoints).
        device: Where the model runs.
        amp: ``"none"``, ``"bf16"`` or ``"fp16"``.
        sampler: The train sampler.
    """

    def __init__(
        self,
        trainer: Trainer,
        model: CMFA,
        ddp: nn.Module,
        opt: torch.optim.Optimizer,
        sched: torch.optim.lr_scheduler.LambdaLR,
        scaler: torch.amp.GradScaler,
        scheme: LandmarkScheme,
        device: torch.device,
        amp: str,
        sampler: EpochSampler,
    ) -> None:
        self.t, self.cfg, self.env = trainer, trainer.cfg, trainer.env
        self.model, self.ddp, self.opt, self.sched, self.scaler = model, ddp, opt, sched, scaler
        self.scheme, self.device, self.amp = scheme, device, amp
        self.sampler = sampler
        self.train_ds: Dataset | None = None
        self.val_ds: Dataset | None = None
        self.history: list[dict[str, float]] = []
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0
        self.tick = time.perf_counter()
        self.writer: Any = None
        self.pbar: Any = None

    def close(self) -> None:
        """Close the TensorBoard writer and the progress bar."""
        if self.writer is not None:
            self.writer.close()
        if self.pbar is not None:
            self.pbar.close()

    def _open_logs(self, step: int) -> None:
        run = self.cfg.run
        if not self.env.is_main:
            return
        if run.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is in the train extra
                LOG.warning("tensorboard is not installed: no TensorBoard logs")
            else:
                self.writer = SummaryWriter(str(self.t.out_dir / "tb"), purge_step=step or None)
        if run.progress:
            from tqdm.auto import tqdm

            self.pbar = tqdm(total=self.cfg.schedule.steps, initial=step, unit="step")
        self.tick = time.perf_counter()

    # ------------------------------------------------------------------------------ step
    def train_step(self, batch: Mapping[str, Tensor], step: int) -> dict[str, float]:
        """One optimizer step; returns scalars (loss terms, per-stage NME, lr, grad norm)."""
        cfg, net = self.cfg, self.model.config
        seed = derive_seed(cfg.run.seed, step, self.env.rank)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        shared = torch.Generator().manual_seed(derive_seed(cfg.run.seed, step))
        dev = self.device
        rgb = batch["rgb"].to(dev, torch.float32, non_blocking=True)
        ev = batch["events"].to(dev, torch.float32, non_blocking=True)
        gt = batch["landmarks"].to(dev, torch.float32, non_blocking=True)
        face = batch["face_present"].to(dev).bool() if "face_present" in batch else None
        rgb_on, ev_on = build.modality_masks(
            batch["rgb_present"].to(dev).bool(),
            batch["event_present"].to(dev).bool(),
            net.p_drop_rgb,
            net.p_drop_event,
            gen,
        )
        init, stages = None, None
        if cfg.loss.p_warm > 0 and float(torch.rand((), generator=shared)) < cfg.loss.p_warm:
            noise = torch.randn(gt.shape, generator=gen).to(dev) * cfg.loss.warm_noise
            init = build.warm_init(gt, face, self.model.mean_shape, noise)
            stages = min(cfg.loss.warm_stages, net.num_stages)
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        with torch.autocast(dev.type, dtype=dtype, enabled=self.amp != "none"):
            out = self.ddp(
                rgb, ev, init_landmarks=init, stages=stages, rgb_present=rgb_on, event_present=ev_on
            )
        out32 = {k: v.float() for k, v in out.items()}
        eyes = self.scheme.outer_eyes
        terms = cmfa_loss(
            out32,  # type: ignore[arg-type]
            gt,
            net.stage_weights,
            eyes,
            cfg.loss.conf_weight,
            cfg.loss.conf_tau,
            face_present=face,
        )
        lr = float(self.sched.get_last_lr()[0])
        build.require_finite_loss(terms.total, step, lr)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        build.drop_frozen_grads(self.opt, self.sched.last_epoch)
        gnorm = torch.zeros(())
        if cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            gnorm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        with torch.no_grad():
            pos = slice(None) if face is None or not bool(face.any()) else face
            last = out32["stage_landmarks"][:, :, -1]
            nme = normalized_error(last[pos], gt[pos], eyes).mean(dim=(0, 2))
        scalars = {
            "loss": float(terms.total.detach()),
            "align": float(terms.align.detach()),
            "confidence": float(terms.confidence.detach()),
            "grad_norm": float(gnorm),
            "lr": lr,
            "warm": float(init is not None),
        }
        if face is not None and not bool(face.all()):
            with torch.no_grad():
                conf = torch.sigmoid(out32["stage_confidence_logits"][:, -1]).mean(dim=1)
                scalars["conf_face"] = float(conf[face].mean()) if bool(face.any()) else 0.0
                scalars["conf_background"] = float(conf[~face].mean())
        first = net.num_stages - len(nme) if init is not None else 0
        scalars.update({f"nme_stage{first + i}": float(v) for i, v in enumerate(nme)})
        return scalars

    # ------------------------------------------------------------------------------ loop
    def loop(self, loader: DataLoader, sampler: EpochSampler, step: int) -> int:
        """Run steps until ``schedule.steps``; returns the final step."""
        total, run = self.cfg.schedule.steps, self.cfg.run
        self._open_logs(step)
        bpe = sampler.batches_per_epoch
        self.model.train()
        while step < total:
            epoch, start = divmod(step, bpe)
            sampler.set_epoch(epoch, start)
            if hasattr(self.train_ds, "set_epoch"):
                self.train_ds.set_epoch(epoch)
            for batch in loader:
                scalars = self.train_step(batch, step)
                step += 1
                self._accumulate(scalars, step)
                if step % run.checkpoint_every == 0 and step < total:
                    self.save(step)
                if run.eval_every and step % run.eval_every == 0 and step < total:
                    self.validate(step, modes=("fused",))
                if self.t.on_step is not None:
                    self.t.on_step(step, scalars)
                if step >= total:
                    break
        return step

    def _accumulate(self, scalars: Mapping[str, float], step: int) -> None:
        for k, v in scalars.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.steps += 1
        if self.pbar is not None:
            self.pbar.update(1)
        if step % self.cfg.run.log_every and step != self.cfg.schedule.steps:
            return
        now = time.perf_counter()
        mean = {k: v / self.counts[k] for k, v in self.sums.items()}
        rate = self.steps * self.cfg.data.batch_size * self.env.world_size / (now - self.tick)
        mean["samples_per_s"] = rate
        self.sums, self.counts, self.steps, self.tick = {}, {}, 0, now
        if not self.env.is_main:
            return
        self.history.append({"step": float(step), **mean})
        if self.writer is not None:
            for k, v in mean.items():
                self.writer.add_scalar(f"train/{k}", v, step)
        if self.pbar is not None:
            self.pbar.set_postfix(loss=f"{mean['loss']:.4f}", nme=f"{_last_nme(mean):.4f}")
        LOG.info(
            "step %d loss %.4f nme %.4f lr %.2e %.1f samples/s",
            *(step, mean["loss"], _last_nme(mean), mean["lr"], rate),
        )

    # ------------------------------------------------------------------------ outputs
    def validate(self, step: int, modes: tuple[str, ...]) -> dict[str, float]:
        """Evaluate on the validation split (rank 0); returns flat ``val_*`` metrics."""
        result: dict[str, float] = {}
        if self.env.is_main and self.val_ds is not None:
            from training.evaluate import evaluate

            res = evaluate(
                self.model,
                self.val_ds,
                self.scheme,
                modes=modes,
                batch_size=max(self.cfg.data.batch_size, 32),
                device=self.device,
                limit=self.cfg.data.val_limit,
            )
            for mode in modes:
                for key, value in res.report["by_mode"][mode].items():
                    if isinstance(value, float) and key != "count":
                        suffix = "" if mode == "fused" else f"_{mode}"
                        result[f"val_{key}{suffix}"] = value
            if self.writer is not None:
                for key, value in result.items():
                    self.writer.add_scalar(f"val/{key[4:]}", value, step)
            LOG.info("step %d validation %s", step, result)
        barrier(self.env)
        return result

    def _write_model(self, path: Path, metrics: Mapping[str, float] | None = None) -> None:
        representations, preprocessing = build.dataset_metadata(self.train_ds)
        save_checkpoint(
            path,
            self.model,
            landmark_scheme=self.scheme.name,
            representations=representations,
            training_command=self.t.command,
            lineage=self.t.lineage,
            metrics=dict(metrics or {}),
            preprocessing=preprocessing,
        )

    def save(self, step: int) -> Path | None:
        """Write the training checkpoint of ``step`` (rank 0), then wait for all ranks."""
        path = None
        if self.env.is_main:
            opt_t, opt_meta = optimizer_to_flat(self.opt.state_dict())
            rng_t, rng_meta = rng_state()
            bpe = self.sampler.batches_per_epoch
            meta = {
                "optimizer": opt_meta,
                "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng_meta,
                "sampler": {
                    "epoch": step // bpe,
                    "batch": step % bpe,
                    "world_size": self.env.world_size,
                    "batch_size": self.cfg.data.batch_size,
                },
                "config": self.cfg.to_dict(),
                "training_command": self.t.command,
            }
            path = save_training_checkpoint(
                self.t.ckpt_dir,
                step,
                self._write_model,
                {**opt_t, **rng_t},
                meta,
                keep=self.cfg.run.keep_checkpoints,
            )
        barrier(self.env)
        return path

    def finish(self, step: int) -> TrainResult:
        """Save the last checkpoint, validate all modes and write the final model."""
        if self.env.enabled:  # DDP syncs buffers (BatchNorm statistics) only before a forward
            for buf in self.model.buffers():
                torch.distributed.broadcast(buf, src=0)
        self.save(step)
        metrics = self.validate(step, modes=("fused", "event", "rgb"))
        final = None
        if self.env.is_main:
            final = self.t.out_dir / "model.safetensors"
            self._write_model(final, metrics)
            LOG.info("wrote %s (step %d, %s)", final, step, metrics)
        barrier(self.env)
        digest = weights_digest(self.model)
        return TrainResult(self.t.out_dir, final, step, metrics, self.history, digest)


def _last_nme(scalars: Mapping[str, float]) -> float:
    keys = sorted(k for k in scalars if k.startswith("nme_stage"))
    return scalars[keys[-1]] if keys else float("nan")
