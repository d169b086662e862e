"""CMFA training loss: inter-ocular-normalised L2 over stages and layers, plus confidence.

Alignment term (the authors' ``Alignment_Loss`` and ``train_function.py``): for every stage s and
decoder layer l, the mean over landmarks of the Euclidean error, divided by the ground truth's
inter-ocular distance (outer eye corners), averaged over layers and batch; stages are combined with
weights 0.2/0.3/0.5 (``CMFAConfig.stage_weights``)::

    L_align = sum_s w_s * mean_{b,l} [ mean_n ||p_{b,s,l,n} - g_{b,n}||_2 / iod_b ]

Confidence term (beyond the paper): each stage's confidence logit ``z`` is trained with binary
cross-entropy towards the soft target ``exp(-e / tau)`` where ``e`` is that stage's detached
per-landmark error over inter-ocular distance; so ``sigmoid(z)`` estimates how close a landmark
is (1 = exact, 0.37 at ``e = tau``). Stages are weighted like the alignment term:
``L = L_align + conf_weight * L_conf``.

Negative crops (no face, ``face_present`` False; beyond the paper): they add no alignment term
and their confidence target is 0 for every landmark, so the mean confidence also tells a face
crop from background (the pipeline's face search relies on that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor

from facealign_ros.model.cmfa import CMFAOutput

# Outer eye corners (right eye outer, left eye outer) of common schemes, as in NME evaluation.
INTEROCULAR = {98: (60, 72), 68: (36, 45), 70: (36, 45)}


def interocular_indices(num_points: int) -> tuple[int, int]:
    """Outer-eye-corner indices for 98 (WFLW), 68 (iBUG) and 70 (REP-155) point schemes.

    Raises:
        ValueError: For other counts (pass ``eye_indices`` explicitly).
    """
    if num_points not in INTEROCULAR:
        raise ValueError(f"no default inter-ocular indices for {num_points} points")
    return INTEROCULAR[num_points]


def normalized_error(pred: Tensor, target: Tensor, eye_indices: tuple[int, int]) -> Tensor:
    """Per-landmark Euclidean error over inter-ocular distance.

    Args:
        pred: (B, ..., N, 2) predictions.
        target: (B, N, 2) ground truth.
        eye_indices: Indices of the two outer eye corners in ``target``.

    Returns:
        (B, ..., N) errors in units of the inter-ocular distance.
    """
    iod = torch.linalg.vector_norm(target[:, eye_indices[0]] - target[:, eye_indices[1]], dim=-1)
    extra = pred.dim() - target.dim()
    tgt = target.reshape(target.shape[0], *([1] * extra), *target.shape[1:])
    err = torch.linalg.vector_norm(pred - tgt, dim=-1)
    return err / iod.clamp_min(1e-6).reshape(-1, *([1] * (err.dim() - 1)))


@dataclass(frozen=True)
class LossTerms:
    """Loss and its parts (all scalars; ``stage_nme`` is (S,) detached)."""

    total: Tensor
    align: Tensor
    confidence: Tensor
    stage_nme: Tensor


def stage_weights_for(weights: Sequence[float], num_run: int) -> list[float]:
    """Weights of the stages actually run: the last ``num_run`` of ``weights``, renormalised.

    A warm-started forward runs the finest stages, so their weights are the last ones.
    """
    if num_run == len(weights):
        return list(weights)
    tail = list(weights[-num_run:])
    total = sum(tail) or 1.0
    return [w * sum(weights) / total for w in tail]


def cmfa_loss(
    output: CMFAOutput,
    target: Tensor,
    stage_weights: Sequence[float],
    eye_indices: tuple[int, int],
    conf_weight: float = 0.1,
    conf_tau: float = 0.05,
    face_present: Tensor | None = None,
) -> LossTerms:
    """Weighted multi-stage alignment loss plus confidence loss.

    Args:
        output: Forward output of :class:`~facealign_ros.model.cmfa.CMFA`.
        target: (B, N, 2) ground-truth landmarks in [0, 1] crop coordinates.
        stage_weights: One weight per configured stage (e.g. 0.2, 0.3, 0.5).
        eye_indices: Outer eye corner indices for the inter-ocular distance.
        conf_weight: Weight of the confidence term.
        conf_tau: Error (in inter-ocular units) at which the confidence target is 1/e.
        face_present: (B,) bool; False marks negative crops (None: all are faces).

    Returns:
        :class:`LossTerms`.
    """
    stage_lms = output["stage_landmarks"]  # (B, S, L, N, 2)
    logits = output["stage_confidence_logits"]  # (B, S, N)
    err = normalized_error(stage_lms, target, eye_indices)  # (B, S, L, N)
    conf_target = torch.exp(-err[:, :, -1].detach() / conf_tau)  # (B, S, N)
    if face_present is not None and not bool(face_present.all()):
        pos = face_present.to(err.device).bool()
        per_stage = err[pos].mean(dim=(0, 2, 3)) if bool(pos.any()) else err.sum((0, 2, 3)) * 0
        conf_target = conf_target * pos.to(conf_target.dtype)[:, None, None]
    else:
        per_stage = err.mean(dim=(0, 2, 3))  # (S,)
    w = torch.tensor(stage_weights_for(stage_weights, err.shape[1]), device=err.device)
    align = (w * per_stage).sum()
    bce = F.binary_cross_entropy_with_logits(logits, conf_target, reduction="none")
    conf = (w * bce.mean(dim=(0, 2))).sum()
    return LossTerms(
        total=align + conf_weight * conf,
        align=align,
        confidence=conf,
        stage_nme=per_stage.detach(),
    )
