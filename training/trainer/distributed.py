"""DistributedDataParallel plumbing: process group from torchrun's environment, rank helpers.

``torchrun --nproc_per_node=N`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_distributed` reads them (``init_method="env://"``) and picks gloo on
the CPU and nccl on CUDA. Without them the run is a single process and nothing is initialised.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from training.trainer.config import RunSection


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job.

    Attributes:
        rank: Global rank.
        world_size: Number of processes.
        local_rank: Rank on this machine (the CUDA device index).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0 (which logs and writes checkpoints)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True for a multi-process job."""
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> DistEnv:
        """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (defaults: a single process)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        return cls(rank=rank, world_size=world, local_rank=local)


def pick_device(requested: str, env: DistEnv) -> torch.device:
    """``auto``/``cpu``/``cuda`` -> a device; CUDA jobs use ``cuda:<local_rank>``.

    Raises:
        RuntimeError: ``cuda`` requested but not available.
    """
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device=cuda but CUDA is not available")
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    return torch.device("cpu")


def init_distributed(env: DistEnv, device: torch.device) -> None:
    """Initialise the default process group from the environment (no-op for one process)."""
    if not env.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend, init_method="env://", rank=env.rank, world_size=env.world_size
    )


def barrier(env: DistEnv) -> None:
    """Wait for all ranks (no-op for one process)."""
    if env.enabled and dist.is_initialized():
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    """Destroy the process group if this job created one."""
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A free TCP port on localhost (for single-machine jobs started without torchrun)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_environment(rank: int, world: int, port: int) -> dict[str, str]:
    """The variables ``torchrun`` sets for process ``rank`` of ``world`` on this machine.

    For jobs whose processes are started some other way (``multiprocessing`` in tests):
    ``os.environ.update(torchrun_environment(rank, world, free_port()))``.
    """
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world),
    }


T = TypeVar("T")


def run_on_device(run: RunSection, env: DistEnv, fit: Callable[[torch.device], T]) -> T:
    """Run ``fit(device)`` as ``run`` says: threads, determinism, device, process group.

    The process group is left again also when ``fit`` raises.
    """
    if run.threads:
        torch.set_num_threads(run.threads)
    if run.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device(run.device, env)
    init_distributed(env, device)
    try:
        return fit(device)
    finally:
        shutdown(env)
