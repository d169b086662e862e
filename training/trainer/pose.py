"""Head pose for evaluation: crop landmarks back to sensor pixels, camera matrices, PnP adapter.

A pose function maps ``(M, N, 2)`` landmarks in sensor pixels, the landmark scheme and
``(M, 3, 3)`` camera matrices (or None) to ``(M, 3)`` yaw/pitch/roll degrees (NaN = unknown).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from facealign_ros.face.landmarks import LandmarkScheme

if TYPE_CHECKING:
    from torch.utils.data import Dataset

LOG = logging.getLogger("training.evaluate")
PoseFn = Callable[[np.ndarray, LandmarkScheme, "np.ndarray | None"], np.ndarray]


def crop_to_sensor(landmarks: np.ndarray, A: np.ndarray, size: int) -> np.ndarray:
    """(M, N, 2) landmarks in [0, 1] crop coordinates -> sensor pixels through ``A^-1``."""
    crop_px = np.asarray(landmarks, dtype=np.float64) * size - 0.5
    lin, off = A[:, :, :2], A[:, :, 2]
    return np.einsum("mij,mnj->mni", np.linalg.inv(lin), crop_px - off[:, None, :])


def sample_intrinsics(dataset: Dataset, samples: Sequence[int]) -> np.ndarray | None:
    """(M, 3, 3) camera matrices of ``samples`` (dataset indices), or None if unknown.

    Uses ``dataset.intrinsics(i)`` when the dataset has it; for a
    :class:`training.data.BagWindowDataset` (``bags`` + ``index``) the bag's CameraInfo ``K`` or
    :func:`~facealign_ros.face.pose.default_intrinsics` of its sensor size.
    """
    if callable(getattr(dataset, "intrinsics", None)):
        return np.stack([np.asarray(dataset.intrinsics(int(i)), np.float64) for i in samples])
    bags, index = getattr(dataset, "bags", None), getattr(dataset, "index", None)
    if bags is None or index is None:
        return None
    from facealign_ros.face.pose import default_intrinsics

    out = []
    for i in samples:
        bag = bags[index[int(i)][0]]
        k = getattr(bag, "K", None)
        out.append(default_intrinsics(bag.width, bag.height) if k is None else np.asarray(k))
    return np.stack(out).astype(np.float64)


def facealign_pose_fn() -> PoseFn | None:
    """PnP head pose with ``facealign_ros.face.pose.estimate_pose`` (None if not importable).

    Needs camera matrices; samples without one, or where PnP fails, give NaN.
    """
    try:
        from facealign_ros.face.pose import estimate_pose
    except ImportError:  # pragma: no cover - present in this package
        return None

    def pose_fn(points_px: np.ndarray, scheme: LandmarkScheme, K: np.ndarray | None) -> np.ndarray:
        out = np.full((len(points_px), 3), np.nan)
        if K is None:
            return out
        for i, pts in enumerate(points_px):
            try:
                pose = estimate_pose(pts, K[i])
            except (ValueError, np.linalg.LinAlgError) as exc:  # e.g. a 98-point scheme
                LOG.debug("pose estimation failed on sample %d: %s", i, exc)
                continue
            if pose is not None:
                out[i] = pose.euler_deg
        return out

    return pose_fn
