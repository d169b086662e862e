"""Data-loader worker set-up shared by the training, pretraining and evaluation loaders."""

from __future__ import annotations

import cv2


def single_threaded_worker(worker_id: int) -> None:
    """``worker_init_fn`` of a DataLoader: OpenCV single-threaded in each worker process.

    The workers are the parallelism. torch already runs one intra-op thread in a worker, but
    OpenCV keeps its pool of one thread per core, so N workers on an N-core machine could run
    N² threads (the synthetic engine's render workers did: load 274 on 16 cores).

    Args:
        worker_id: the worker's index (unused).
    """
    del worker_id
    cv2.setNumThreads(1)
