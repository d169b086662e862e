"""Face-alignment metrics: NME, FR, CED, AUC and head-pose MAE, as plain numpy functions.

Definitions (the usual ones of the WFLW / 300-W literature):

- NME of a sample: the mean over its N landmarks of the Euclidean error divided by a normalising
  distance of the *ground truth*: the outer-eye-corner distance (``"interocular"``, default) or
  the pupil distance (``"interpupil"``; pupils or eye-contour means, see
  :func:`facealign_ros.face.landmarks.inter_pupil`).
- FR@t (failure rate): the fraction of samples whose NME is greater than ``t`` (0.10).
- CED (cumulative error distribution): ``F(x) = fraction of samples with NME <= x``.
- AUC@t: the area under the CED from 0 to ``t``, divided by ``t`` (so 1 = every NME is 0). It is
  computed exactly: ``(1/t) * integral_0^t F(x) dx = mean_i max(0, 1 - e_i / t)``; numerical
  integrations of a sampled CED (e.g. ``np.trapz`` with step 1e-4) approximate it.
- Pose MAE: mean absolute angle difference in degrees, wrapped to [-180, 180), per axis
  (yaw, pitch, roll), over samples whose ground truth is finite.

All functions take ``(M, N, 2)`` landmark arrays (any consistent unit) or ``(M,)`` NMEs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from facealign_ros.face.landmarks import LandmarkScheme, inter_ocular, inter_pupil

NORMS = ("interocular", "interpupil")
POSE_AXES = ("yaw", "pitch", "roll")


def normalizing_distance(
    gt: np.ndarray, scheme: LandmarkScheme, norm: str = "interocular"
) -> np.ndarray:
    """Per-sample normalising distance of ground-truth landmarks.

    Args:
        gt: (M, N, 2) ground-truth landmarks.
        scheme: Landmark scheme of ``gt``.
        norm: ``"interocular"`` (outer eye corners) or ``"interpupil"``.

    Returns:
        (M,) distances.

    Raises:
        ValueError: Unknown ``norm``.
    """
    pts = np.asarray(gt, dtype=np.float64)
    if norm == "interocular":
        return inter_ocular(pts, scheme)
    if norm == "interpupil":
        return inter_pupil(pts, scheme)
    raise ValueError(f"unknown norm {norm!r}; choose from {NORMS}")


def nme_per_sample(pred: np.ndarray, gt: np.ndarray, norm_dist: np.ndarray) -> np.ndarray:
    """Normalised mean error of each sample.

    Args:
        pred: (M, N, 2) predicted landmarks.
        gt: (M, N, 2) ground truth, same unit.
        norm_dist: (M,) normalising distances (see :func:`normalizing_distance`).

    Returns:
        (M,) NMEs (a fraction: 0.05 = 5 %).
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape or p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be (M, N, 2), got {p.shape} and {g.shape}")
    err = np.linalg.norm(p - g, axis=-1).mean(axis=-1)
    return err / np.maximum(np.asarray(norm_dist, dtype=np.float64), 1e-12)


def failure_rate(nmes: np.ndarray, threshold: float = 0.1) -> float:
    """Fraction of samples with NME > ``threshold`` (NaN for no samples)."""
    e = np.asarray(nmes, dtype=np.float64)
    return float(np.mean(e > threshold)) if e.size else float("nan")


def ced_curve(
    nmes: np.ndarray, threshold: float = 0.1, num: int = 201
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution sampled on ``[0, threshold]``.

    Args:
        nmes: (M,) per-sample NMEs.
        threshold: Upper end of the curve.
        num: Number of x samples.

    Returns:
        ``(x, y)``: (num,) NME values and the fraction of samples with NME <= x.
    """
    e = np.sort(np.asarray(nmes, dtype=np.float64))
    x = np.linspace(0.0, threshold, num)
    if not e.size:
        return x, np.full_like(x, np.nan)
    return x, np.searchsorted(e, x, side="right") / e.size


def auc(nmes: np.ndarray, threshold: float = 0.1) -> float:
    """Exact area under the CED on ``[0, threshold]``, normalised to 1 (NaN for no samples)."""
    e = np.asarray(nmes, dtype=np.float64)
    if not e.size:
        return float("nan")
    return float(np.mean(np.clip(1.0 - e / threshold, 0.0, 1.0)))


def summarize(nmes: np.ndarray, threshold: float = 0.1) -> dict[str, float]:
    """``count``, ``nme`` (mean), ``fr10`` and ``auc10`` (suffix = threshold in %) of NMEs."""
    e = np.asarray(nmes, dtype=np.float64)
    pct = int(round(threshold * 100))
    return {
        "count": float(e.size),
        "nme": float(e.mean()) if e.size else float("nan"),
        f"fr{pct}": failure_rate(e, threshold),
        f"auc{pct}": auc(e, threshold),
    }


def angle_diff_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` in degrees wrapped to [-180, 180)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return (d + 180.0) % 360.0 - 180.0


def pose_mae(pred_deg: np.ndarray, gt_deg: np.ndarray) -> dict[str, float] | None:
    """Head-pose mean absolute error per axis and their mean.

    Args:
        pred_deg: (M, 3) predicted yaw, pitch, roll in degrees (NaN where no estimate).
        gt_deg: (M, 3) ground truth in degrees (NaN where unknown).

    Returns:
        ``{"yaw", "pitch", "roll", "mean", "count"}`` over samples where both are finite, or
        None when there is no such sample.
    """
    p = np.asarray(pred_deg, dtype=np.float64).reshape(-1, 3)
    g = np.asarray(gt_deg, dtype=np.float64).reshape(-1, 3)
    ok = np.isfinite(p).all(axis=1) & np.isfinite(g).all(axis=1)
    if not ok.any():
        return None
    err = np.abs(angle_diff_deg(p[ok], g[ok])).mean(axis=0)
    out = {axis: float(v) for axis, v in zip(POSE_AXES, err, strict=True)}
    out["mean"] = float(err.mean())
    out["count"] = float(ok.sum())
    return out


def finite_or_none(value: object) -> object:
    """Recursively replace non-finite floats by None so that the result is strict JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value
