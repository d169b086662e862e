"""SSMER network and loss: SimSiam (Chen & He 2021) across event representations.

The encoder is the CMFA event backbone (:func:`~facealign_ros.model.backbones.build_backbone`
with the same :class:`~facealign_ros.model.config.CMFAConfig`), followed by global average
pooling, a 3-layer projector (BN after every layer, no ReLU after the last) and a 2-layer
bottleneck predictor, as in the paper (projector 2048, predictor 512 for HRNet-W18). The loss
sums the symmetric negative cosine over every pair of views, with a stop-gradient on the target
branch. Parameter names start with ``encoder.`` so ``facealign train --init-event-encoder``
picks the encoder out of a saved SSMER model.

Optional dense term (``dense_dim > 0``; in the spirit of DenseCL / PixPro): the encoder's
feature map is sampled at the same scene points in every view (their view coordinates come from
:func:`~training.ssmer.views.make_views_with_points`), each point goes through a small dense
projector and predictor, and :func:`dense_simsiam_loss` asks the features of one place to agree
across views. The pooled loss alone makes features invariant to where the face sits in a crop;
landmark regression samples the feature map at the landmarks, so it needs them to move with the
face (equivariance), which is what the dense term asks for.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor, nn

from facealign_ros.model.backbones import build_backbone
from facealign_ros.model.config import CMFAConfig


class SimSiam(nn.Module):
    """Encoder + projector + predictor.

    Args:
        net: CMFA network config (backbone kind/width, ``feature_dim``, ``event_channels``).
        proj_dim: projector width (output dimension of ``z``).
        pred_dim: predictor bottleneck width.
        dense_dim: width of the dense (per-point) projector; 0 builds no dense heads.
    """

    def __init__(
        self, net: CMFAConfig, proj_dim: int = 2048, pred_dim: int = 512, dense_dim: int = 0
    ) -> None:
        super().__init__()
        self.net = net
        self.encoder = build_backbone(net, net.event_channels)
        d = net.feature_dim
        self.projector = _projector(d, proj_dim, layers=3)
        self.predictor = _predictor(proj_dim, pred_dim)
        self.dense_dim = dense_dim
        if dense_dim > 0:  # per-point heads (2 layers; predictor bottleneck a quarter)
            self.dense_projector = _projector(d, dense_dim, layers=2)
            self.dense_predictor = _predictor(dense_dim, max(dense_dim // 4, 4))

    def forward(self, views: Tensor, points: Tensor | None = None) -> tuple[Tensor, ...]:
        """``(B, V, C, S, S)`` views -> ``(z, p, h)``, with ``points`` ``(z, p, h, dz, dp)``.

        ``z``, ``p``: ``(V, B, proj_dim)``; ``h``: pooled encoder features ``(V, B, feature_dim)``.
        ``points``: ``(B, V, K, 2)`` the same K scene points in each view's ``grid_sample``
        coordinates (needs ``dense_dim > 0``); ``dz``, ``dp``: ``(V, B, K, dense_dim)``, the
        dense projections and predictions at those points.

        The encoder runs once over all views (one batch); projector and predictor run per
        view, so their batch statistics are those of one view, as in SimSiam.
        """
        b, v = views.shape[:2]
        fmap = self.encoder(views.transpose(0, 1).flatten(0, 1))
        feats = fmap.mean(dim=(2, 3)).view(v, b, -1)
        z = torch.stack([self.projector(feats[i]) for i in range(v)])
        p = torch.stack([self.predictor(z[i]) for i in range(v)])
        if points is None:
            return z, p, feats
        if self.dense_dim <= 0:
            raise ValueError("SimSiam: points given but the model has no dense heads")
        k = points.shape[2]
        grid = points.transpose(0, 1).flatten(0, 1).unsqueeze(2).float()  # (V*B, K, 1, 2)
        # fp32 points even under autocast (bf16 would move them by ~0.25 px at S=128)
        at = F.grid_sample(
            fmap.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        at = at.squeeze(3).transpose(1, 2).reshape(v, b * k, -1)  # (V, B*K, feature_dim)
        dz = torch.stack([self.dense_projector(at[i]) for i in range(v)])
        dp = torch.stack([self.dense_predictor(dz[i]) for i in range(v)])
        return z, p, feats, dz.view(v, b, k, -1), dp.view(v, b, k, -1)


def _projector(d_in: int, width: int, layers: int) -> nn.Sequential:
    """SimSiam projector: ``layers`` linear layers, BN (+ ReLU) after each, no affine at the end."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Linear(d_in if i == 0 else width, width, bias=False))
        last = i == layers - 1
        mods += [nn.BatchNorm1d(width, affine=not last)] + ([] if last else [nn.ReLU(inplace=True)])
    return nn.Sequential(*mods)


def _predictor(width: int, bottleneck: int) -> nn.Sequential:
    """SimSiam predictor: ``width -> bottleneck`` (BN, ReLU) ``-> width``."""
    return nn.Sequential(
        nn.Linear(width, bottleneck, bias=False),
        nn.BatchNorm1d(bottleneck),
        nn.ReLU(inplace=True),
        nn.Linear(bottleneck, width),
    )


def simsiam_loss(z: Tensor, p: Tensor) -> Tensor:
    """Sum over view pairs of ``(D(p_i, sg(z_j)) + D(p_j, sg(z_i))) / 2``, D = -cosine.

    Args:
        z: ``(V, B, D)`` projections.
        p: ``(V, B, D)`` predictions.

    Returns:
        Scalar; ``-1`` per pair is perfect agreement.
    """
    total = z.new_zeros(())
    for i, j in itertools.combinations(range(z.shape[0]), 2):
        total = total - 0.5 * F.cosine_similarity(p[i], z[j].detach(), dim=-1).mean()
        total = total - 0.5 * F.cosine_similarity(p[j], z[i].detach(), dim=-1).mean()
    return total


def dense_simsiam_loss(dz: Tensor, dp: Tensor, points: Tensor) -> Tensor:
    """:func:`simsiam_loss` per scene point, over the points inside both views of a pair.

    Args:
        dz: ``(V, B, K, D)`` dense projections.
        dp: ``(V, B, K, D)`` dense predictions.
        points: ``(V, B, K, 2)`` the points' ``grid_sample`` coordinates in each view; a point
            outside ``[-1, 1]`` in either view of a pair does not count for that pair.

    Returns:
        Scalar; ``-1`` per pair is perfect agreement, 0 where no point is in both views.
    """
    inside = (points.abs() <= 1.0).all(dim=-1)  # (V, B, K)
    total = dz.new_zeros(())
    for i, j in itertools.combinations(range(dz.shape[0]), 2):
        both = (inside[i] & inside[j]).to(dz.dtype)
        n = both.sum().clamp(min=1.0)
        cos_ij = F.cosine_similarity(dp[i], dz[j].detach(), dim=-1)
        cos_ji = F.cosine_similarity(dp[j], dz[i].detach(), dim=-1)
        total = total - 0.5 * ((cos_ij + cos_ji) * both).sum() / n
    return total


def collapse_ratio(z: Tensor) -> float:
    """Std over the batch of l2-normalised ``z`` (mean over dims) x sqrt(D), over views.

    About 1 for well-spread outputs, 0 when every sample maps to the same vector (collapse).
    Measure it on the encoder features (what fine-tuning uses) or the predictions: the
    projector ends in a batch norm, which rescales every dimension to unit variance and so
    hides a collapse of what comes before it.
    """
    zn = F.normalize(z.detach().float(), dim=-1)
    return float(zn.std(dim=1).mean() * zn.shape[-1] ** 0.5)
