"""SSMER network and loss: SimSiam (Chen & He 2021) across event representations.

The encoder is the CMFA event backbone (:func:`~facealign_ros.model.backbones.build_backbone`
with the same :class:`~facealign_ros.model.config.CMFAConfig`), followed by global average
pooling, a 3-layer projector (BN after every layer, no ReLU after the last) and a 2-layer
bottleneck predictor, as in the paper (projector 2048, predictor 512 for HRNet-W18). The loss
sums the symmetric negative cosine over every pair of views, with a stop-gradient on the target
branch. Parameter names start with ``encoder.`` so ``facealign train --init-event-encoder``
picks the encoder out of a saved SSMER model.
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
    """

    def __init__(self, net: CMFAConfig, proj_dim: int = 2048, pred_dim: int = 512) -> None:
        super().__init__()
        self.net = net
        self.encoder = build_backbone(net, net.event_channels)
        d = net.feature_dim
        self.projector = nn.Sequential(
            nn.Linear(d, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim, affine=False),
        )
        self.predictor = nn.Sequential(
            nn.Linear(proj_dim, pred_dim, bias=False),
            nn.BatchNorm1d(pred_dim),
            nn.ReLU(inplace=True),
            nn.Linear(pred_dim, proj_dim),
        )

    def forward(self, views: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, V, C, S, S)`` views -> ``(z, p, h)``.

        ``z``, ``p``: ``(V, B, proj_dim)``; ``h``: pooled encoder features ``(V, B, feature_dim)``.

        The encoder runs once over all views (one batch); projector and predictor run per
        view, so their batch statistics are those of one view, as in SimSiam.
        """
        b, v = views.shape[:2]
        feats = self.encoder(views.transpose(0, 1).flatten(0, 1)).mean(dim=(2, 3))
        feats = feats.view(v, b, -1)
        z = torch.stack([self.projector(feats[i]) for i in range(v)])
        p = torch.stack([self.predictor(z[i]) for i in range(v)])
        return z, p, feats


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


def collapse_ratio(z: Tensor) -> float:
    """Std over the batch of l2-normalised ``z`` (mean over dims) x sqrt(D), over views.

    About 1 for well-spread outputs, 0 when every sample maps to the same vector (collapse).
    Measure it on the encoder features (what fine-tuning uses) or the predictions: the
    projector ends in a batch norm, which rescales every dimension to unit variance and so
    hides a collapse of what comes before it.
    """
    zn = F.normalize(z.detach().float(), dim=-1)
    return float(zn.std(dim=1).mean() * zn.shape[-1] ** 0.5)
