"""The CMFA training loop: AdamW + warmup/cosine, AMP on CUDA, DDP, exact resume, logging.

Exactness: the data order of epoch e is drawn from (seed, e); a sample's augmentation from
(seed, e, index); every step re-seeds the global torch RNG and a private generator from
(seed, step, rank), which drive dropout, modality dropout and warm-start noise. So a run resumed
from the checkpoint of step k (weights, optimizer, scheduler, scaler, step) reaches the same
weights at step k + m as an uninterrupted run, bit for bit on the same machine. The global
python/numpy/torch RNG states are saved and restored too, for code outside the step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from facealign_ros.model.checkpoint import read_metadata
from facealign_ros.model.cmfa import CMFA
from training.trainer import build
from training.trainer.config import TrainConfig, dump_config
from training.trainer.context import RunContext, TrainResult
from training.trainer.distributed import DistEnv, run_on_device
from training.trainer.sampler import EpochSampler
from training.trainer.state import (
    MODEL_FILE,
    ResumeError,
    load_training_state,
    refuse_changed_optim,
    restore_run_state,
    resume_path,
)

LOG = logging.getLogger(__name__)
StepHook = Callable[[int, Mapping[str, float]], None]


class Trainer:
    """Trains CMFA as configured.

    Args:
        cfg: The configuration.
        command: Command line recorded in checkpoints (``training_command``).
        env: Process placement; default from the environment (torchrun).
        on_step: Called on every rank after each step with ``(step, scalars)``; an exception
            aborts the run like a kill (tests use it).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        command: str = "",
        env: DistEnv | None = None,
        on_step: StepHook | None = None,
    ) -> None:
        self.cfg = cfg
        self.command = command
        self.env = env or DistEnv.from_env()
        self.on_step = on_step
        self.out_dir = Path(cfg.run.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.lineage: tuple[Mapping[str, str], ...] = ()
        """Earlier runs the weights come from (``--init-from``), recorded in every checkpoint."""

    # ----------------------------------------------------------------------------- setup
    def _resume_path(self) -> Path | None:
        return resume_path(self.cfg.run.resume, self.ckpt_dir)

    def _restore(self, ckpt: Path, model: CMFA, opt: Any, sched: Any, scaler: Any) -> int:
        state = load_training_state(ckpt)
        meta = read_metadata(ckpt / MODEL_FILE)
        if meta.config != model.config:
            raise ResumeError(f"{ckpt}: its network config differs from this run's")
        refuse_changed_optim(
            ckpt, state, self.cfg.to_dict()["optim"],
            f"start a new run from its weights (model.init_from={ckpt / MODEL_FILE})",
        )  # fmt: skip
        restore_run_state(ckpt, state, model, opt, sched, scaler)
        self.lineage = meta.lineage
        sam = state.meta.get("sampler", {})
        now = {"world_size": self.env.world_size, "batch_size": self.cfg.data.batch_size}
        if any(sam.get(k) != v for k, v in now.items()):
            LOG.warning("resuming with a different world size or batch size: data order differs")
        LOG.info("resumed from %s at step %d", ckpt, state.step)
        return state.step

    # ------------------------------------------------------------------------------ fit
    def fit(self) -> TrainResult:
        """Train to ``schedule.steps`` (resuming if configured); returns the outcome."""
        return run_on_device(self.cfg.run, self.env, self._fit)

    def _fit(self, device: torch.device) -> TrainResult:
        cfg, env = self.cfg, self.env
        seed = cfg.run.seed
        train_ds = build.make_dataset(cfg.data, cfg.data.train_split, seed)
        net = cfg.model.network(**build.data_fields(train_ds[0]))
        scheme = build.scheme_for(train_ds, cfg.model, net.num_points)
        resume = self._resume_path()
        mean = None if resume else build.dataset_mean_shape(train_ds, cfg.model.mean_shape_samples)
        model = build.build_model(net, mean, seed)
        preprocessing = build.dataset_metadata(train_ds)[1]
        if resume is None and cfg.model.init_from:
            n = build.load_init_checkpoint(model, cfg.model.init_from, preprocessing)
            self.lineage = build.init_lineage(cfg.model.init_from)
            LOG.info("initialised %d tensors from %s", n, cfg.model.init_from)
        if resume is None and cfg.model.init_event_encoder:
            build.check_encoder_input(cfg.model.init_event_encoder, preprocessing)
            n = build.load_event_encoder(model, cfg.model.init_event_encoder)
            LOG.info("event backbone: %d tensors from %s", n, cfg.model.init_event_encoder)
        model.to(device)
        opt, sched, scaler, amp = build.build_optimization(model, cfg.optim, cfg.schedule, device)
        cuda = device.type == "cuda"
        step = self._restore(resume, model, opt, sched, scaler) if resume else 0
        ddp: nn.Module = model
        if env.enabled:
            ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
        sampler = EpochSampler(
            len(train_ds),  # type: ignore[arg-type]
            seed=seed,
            batch_size=cfg.data.batch_size,
            rank=env.rank,
            world_size=env.world_size,
        )
        bpe = sampler.batches_per_epoch
        if bpe == 0:
            raise ValueError(
                f"train split has fewer samples per process than one batch ({sampler.batch_size})"
            )
        loader = DataLoader(
            train_ds,
            batch_size=cfg.data.batch_size,
            sampler=sampler,
            num_workers=cfg.data.num_workers,
            pin_memory=cuda,
        )
        val_ds = None
        if env.is_main and cfg.data.val_split:
            val_ds = build.make_dataset(cfg.data, cfg.data.val_split, seed)
        ctx = RunContext(self, model, ddp, opt, sched, scaler, scheme, device, amp, sampler)
        ctx.train_ds, ctx.val_ds = train_ds, val_ds
        if env.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        try:
            step = ctx.loop(loader, sampler, step)
            return ctx.finish(step)
        finally:
            ctx.close()
