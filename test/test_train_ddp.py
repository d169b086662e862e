"""DistributedDataParallel smoke test: 2 CPU processes (gloo) on the toy data, like torchrun."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.multiprocessing as mp

from training.trainer.config import load_config
from training.trainer.distributed import free_port
from training.trainer.loop import Trainer

SMOKE = Path(__file__).resolve().parents[1] / "training" / "configs" / "smoke.yaml"


def _worker(rank: int, world: int, port: int, out: str) -> None:
    from training.trainer.distributed import torchrun_environment

    os.environ.update(torchrun_environment(rank, world, port))
    torch.set_num_threads(1)
    cfg = load_config(
        SMOKE,
        [
            f"run.out_dir={out}",
            "run.device=cpu",
            "run.progress=false",
            "run.tensorboard=false",
            "run.checkpoint_every=2",
            "run.log_every=1",
            "schedule.steps=3",
            "data.batch_size=4",
            "data.options.size=64",
            "data.options.num_samples=16",
            "data.options.eval_samples=8",
        ],
    )
    result = Trainer(cfg, command="torchrun --nproc_per_node=2 facealign train").fit()
    Path(out, f"digest_{rank}.txt").write_text(result.weights_digest, encoding="utf-8")


def test_ddp_two_processes_gloo(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    digests = {Path(tmp_path, f"digest_{r}.txt").read_text(encoding="utf-8") for r in range(2)}
    assert len(digests) == 1  # the ranks end with the same weights
    assert (tmp_path / "model.safetensors").is_file()  # written by rank 0 only, once
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert kept == ["step_0000002", "step_0000003"]
