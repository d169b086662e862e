"""Data-loader workers run OpenCV single-threaded (the workers are the parallelism)."""

from __future__ import annotations

import cv2
import torch
from torch.utils.data import DataLoader, Dataset

from training.data.workers import single_threaded_worker


class _Threads(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([cv2.getNumThreads(), torch.get_num_threads()])


def test_loader_workers_run_opencv_and_torch_on_one_thread() -> None:
    loader = DataLoader(
        _Threads(), batch_size=1, num_workers=1, worker_init_fn=single_threaded_worker
    )
    assert [b.tolist() for b in loader] == [[[1, 1]], [[1, 1]]]
